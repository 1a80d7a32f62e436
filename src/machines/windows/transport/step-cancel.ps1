# step cancel: kills the step's wrapper and everything it started (its
# result is then lost: an idempotent step runs again on resume, another is
# STEP_LOST). Inputs: dir. State "ok". Idempotent.
$In = Read-RubiconSpec $RubiconSpec
$pidFile = Join-RubiconPath $In['dir'] 'pid'
if ([IO.File]::Exists($pidFile)) {
  $parts = ([IO.File]::ReadAllText($pidFile)).Trim() -split ' '
  Stop-RubiconTree ([int]$parts[0])
}
Write-RubiconState 'ok'
