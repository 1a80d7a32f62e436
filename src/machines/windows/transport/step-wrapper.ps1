# The detached wrapper of a step (openssh-windows), started by step-start
# with the step folder as its argument: writes "pid <start ticks>" first,
# runs the program of "spec" (stdin from "in", output to "out"/"err", its
# own deadline), then writes "rc". Prints nothing (its stdio is nowhere).
# $Dir: the step folder (the param line is prepended by transport.ts).
Write-RubiconText (Join-RubiconPath $Dir 'pid') ([string]$PID + ' ' + (Get-RubiconStartTicks (Get-Process -Id $PID)))
$In = Read-RubiconSpec ([IO.File]::ReadAllText((Join-RubiconPath $Dir 'spec')))
[void](Invoke-RubiconStepProgram $Dir $In ([int]$In['deadline']))
