# step start (openssh-windows): re-attaches to the step in folder dir, or
# starts it detached, then waits up to wait s. Inputs: dir, idem (1/0),
# deadline (s, 0 none), wait (s), grace (s a launched wrapper has to write
# its pid), max, exe (the PowerShell that runs the wrapper), wrapper (its
# text), spec (the program's spec for the wrapper: file, args, cwd, env.NAME,
# deadline); $RubiconPayload is the program's stdin, written to "in" first.
# States: "done <code> fresh|reattached", "running fresh|reattached", "lost"
# (not idempotent, its process gone without a result: never run twice).
$In = Read-RubiconSpec $RubiconSpec
$d = $In['dir']
$grace = [int]$In['grace']
New-RubiconPrivateFolder $d
$s = Get-RubiconStepState $d $grace
$how = 'reattached'
if ($s -eq 'dead') {
  if ($In['idem'] -ne '1') {
    Write-RubiconState 'lost'
    return
  }
  Clear-RubiconStep $d
  $s = 'none'
}
if ($s -eq 'none') {
  $how = 'fresh'
  if ($null -eq (Get-Command $In['exe'] -CommandType Application -ErrorAction SilentlyContinue)) {
    Write-RubiconState ('noexe ' + (ConvertTo-RubiconB64Text $In['exe']))
    return
  }
  if ($RubiconPayload.Length -gt 0) { Write-RubiconFile (Join-RubiconPath $d 'in') $RubiconPayload 384 }
  Write-RubiconText (Join-RubiconPath $d 'spec') $In['spec']
  Write-RubiconText (Join-RubiconPath $d 'wrapper.ps1') $In['wrapper']
  Write-RubiconText (Join-RubiconPath $d 'launched') ([string][DateTime]::UtcNow.Ticks)
  $boot = "& ([scriptblock]::Create([IO.File]::ReadAllText('" + ((Join-RubiconPath $d 'wrapper.ps1') -replace "'", "''") + "'))) '" + ($d -replace "'", "''") + "'"
  $enc = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($boot))
  if ($RubiconOnWindows) {
    # Win32_Process.Create: the WMI provider host creates the process, so it
    # is outside the ssh session's job object (sshd ends that job's processes
    # with the session) and inherits none of the session's pipe handles.
    $r = Invoke-CimMethod -ClassName Win32_Process -MethodName Create -Arguments @{ CommandLine = ('"' + $In['exe'] + '" -NoProfile -NonInteractive -EncodedCommand ' + $enc); CurrentDirectory = $d }
    if ($r.ReturnValue -ne 0) { throw ('Win32_Process.Create returned ' + $r.ReturnValue) }
  } else {
    # Linux (the test stand-in): setsid in the background with stdio on
    # /dev/null: its own session, no handle of this session's pipes.
    $psi = New-Object System.Diagnostics.ProcessStartInfo
    $psi.FileName = '/bin/sh'
    foreach ($a in @('-c', 'setsid "$@" </dev/null >/dev/null 2>&1 &', 'rubicon-step', $In['exe'], '-NoProfile', '-NonInteractive', '-EncodedCommand', $enc)) { $psi.ArgumentList.Add($a) }
    $psi.UseShellExecute = $false
    $p = [Diagnostics.Process]::Start($psi)
    $p.WaitForExit()
  }
}
$w = Wait-RubiconStep $d ([int]$In['wait']) $grace
if ($w -eq 'done') {
  Write-RubiconStepDone $d ([long]$In['max']) $how
} elseif ($w -eq 'running') {
  Write-RubiconState ('running ' + $how)
} else {
  # Gone without a result while this call watched: reported, never started twice in one call.
  Write-RubiconState 'killed'
}
