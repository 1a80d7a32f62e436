# Removes a folder and everything in it (a run's step folders, read and
# journaled). Inputs: path. State "ok". Destructive; idempotent.
$In = Read-RubiconSpec $RubiconSpec
if ([IO.Directory]::Exists($In['path'])) { Remove-Item -LiteralPath $In['path'] -Recurse -Force }
Write-RubiconState 'ok'
