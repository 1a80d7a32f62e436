# exec: runs one program with its arguments (a short command), output in
# memory. Inputs: file, args, cwd, env.NAME, deadline (s, 0 none), max
# (bytes kept per stream); $RubiconPayload is its stdin.
# State: "done <code> <timedOut 0|1>". Not idempotent by itself: it runs the
# program each call.
$In = Read-RubiconSpec $RubiconSpec
$o = New-Object IO.MemoryStream
$e = New-Object IO.MemoryStream
$r = Invoke-RubiconProgram $In $RubiconPayload $o $e ([int]$In['deadline'])
if ($r.message -ne '') {
  $m = [Text.Encoding]::UTF8.GetBytes($r.message + "`n")
  $e.Write($m, 0, $m.Length)
}
$max = [long]$In['max']
$oh = Get-RubiconHead $o $max
$eh = Get-RubiconHead $e $max
Write-RubiconOutput $oh.bytes $oh.cut $eh.bytes $eh.cut
Write-RubiconState ('done ' + $r.code + ' ' + [int]$r.timedOut)
