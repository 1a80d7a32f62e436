# A step run inline by a Run Command (azure-run-command): the platform runs
# this script detached from Rubicon; the step folder on the machine guards
# it across a deleted run command resource. Inputs: dir ('' for a short
# command with no folder), idem, deadline, max, the program's spec (file,
# args, cwd, env.NAME), stdin ($RubiconPayload, or $RubiconInlineInput for a
# non-secret one such as a Windows script's text, embedded in this script).
# States: "done <code> fresh|reattached", "lost". Exits with the program's code.
$In = Read-RubiconSpec $RubiconSpec
if ($null -ne $RubiconInlineInput) { $stdin = [Text.Encoding]::UTF8.GetBytes($RubiconInlineInput) } else { $stdin = $RubiconPayload }
$max = [long]$In['max']
$d = $In['dir']
if ($d -eq '') {
  $o = New-Object IO.MemoryStream
  $e = New-Object IO.MemoryStream
  $r = Invoke-RubiconProgram $In $stdin $o $e ([int]$In['deadline'])
  if ($r.message -ne '') { $m = [Text.Encoding]::UTF8.GetBytes($r.message + "`n"); $e.Write($m, 0, $m.Length) }
  $oh = Get-RubiconHead $o $max
  $eh = Get-RubiconHead $e $max
  Write-RubiconOutput $oh.bytes $oh.cut $eh.bytes $eh.cut
  Write-RubiconState ('done ' + $r.code + ' fresh')
  exit $r.code
}
New-RubiconPrivateFolder $d
$rcFile = Join-RubiconPath $d 'rc'
if ([IO.File]::Exists($rcFile)) {
  Write-RubiconStepDone $d $max 'reattached'
  exit ([int](([IO.File]::ReadAllText($rcFile)).Trim()))
}
$started = Join-RubiconPath $d 'launched'
if ([IO.File]::Exists($started)) {
  if ($In['idem'] -ne '1') {
    Write-RubiconState 'lost'
    exit 0
  }
  Clear-RubiconStep $d
}
Write-RubiconText $started ([string][DateTime]::UtcNow.Ticks)
if ($stdin.Length -gt 0) { Write-RubiconFile (Join-RubiconPath $d 'in') $stdin 384 }
$code = Invoke-RubiconStepProgram $d $In ([int]$In['deadline'])
Write-RubiconStepDone $d $max 'fresh'
exit $code
