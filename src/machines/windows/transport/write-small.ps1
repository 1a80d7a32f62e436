# writeSmall: $RubiconPayload into path, atomically (temp + Move-Item
# -Force), creating the folder, with mode (owner-only when no group/other
# bit: a protected ACL on Windows). Inputs: path, mode (decimal). State "ok".
# Idempotent: the same call leaves the same file.
$In = Read-RubiconSpec $RubiconSpec
Write-RubiconFile $In['path'] $RubiconPayload ([int]$In['mode'])
Write-RubiconState 'ok'
