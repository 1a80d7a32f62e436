# step wait (openssh-windows): waits up to wait s for the step in dir.
# Inputs: dir, wait, grace, max. States: "done <code> reattached",
# "running", "killed" (its process ended without a result). Read-only.
$In = Read-RubiconSpec $RubiconSpec
$d = $In['dir']
$w = Wait-RubiconStep $d ([int]$In['wait']) ([int]$In['grace'])
if ($w -eq 'done') { Write-RubiconStepDone $d ([long]$In['max']) 'reattached' }
elseif ($w -eq 'running') { Write-RubiconState 'running' }
else { Write-RubiconState 'killed' }
