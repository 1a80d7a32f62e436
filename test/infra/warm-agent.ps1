# The warm VM agent of the Run Command stand-in (run-command-stand-in.ts,
# agentProcess 'warm'): ONE pwsh process that runs each run command's script
# in a fresh runspace, one at a time, where the real agent starts a new
# powershell.exe per script. Test code, never sent to a machine.
#
# Protocol: one request a line on stdin, base64 of JSON {id, file, params:
# [[name, value], ...], out, err}; the script's [Console] output and error go
# to the files `out` and `err` (UTF-8, no BOM); the answer is the line
# "RUBICON-WARM-AGENT <id> rc <code>" on this process's own stdout (a child
# process of a script that inherited stdout cannot forge it: the id is the
# caller's nonce).
#
# What the script sees, as under `pwsh -NoProfile -NonInteractive -File`:
# its parameters as strings, a runspace of its own (variables, functions,
# modules, the current location, StrictMode, preferences), this process's
# environment, [Console]::Out / ::Error. The exit code as -File gives it:
# `exit N` -> N; a terminating error -> 1 (its message on stderr); the end of
# the script -> 0. Write-Host and pipeline output are written to stdout after
# the script ends (not interleaved), non-terminating errors to stderr as
# their message (not the formatted record).
#
# What differs from a process per script (said so the tests do not rely on
# it): a script that ends WITHOUT `exit` right after a failing native
# command gets that command's exit code here (-File gives 0); process-wide
# state outlives a script ($env: changes, [Environment]::CurrentDirectory,
# types loaded with Add-Type, static fields). Rubicon's transport entries
# (src/machines/windows/transport/*.ps1) run programs through
# System.Diagnostics.Process, not as native commands of the pipeline, and
# change none of that state.
$ErrorActionPreference = 'Stop'
$reply = [Console]::Out
$replyErr = [Console]::Error
$utf8 = New-Object Text.UTF8Encoding($false)
while ($null -ne ($line = [Console]::In.ReadLine())) {
  if ($line.Trim() -eq '') { continue }
  $req = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($line.Trim())) | ConvertFrom-Json
  $o = New-Object IO.StreamWriter($req.out, $false, $utf8)
  $e = New-Object IO.StreamWriter($req.err, $false, $utf8)
  $code = 0
  $rs = $null
  $ps = $null
  try {
    $rs = [runspacefactory]::CreateRunspace([Management.Automation.Runspaces.InitialSessionState]::CreateDefault2())
    $rs.Open()
    $ps = [powershell]::Create()
    $ps.Runspace = $rs
    [void]$ps.AddCommand([string]$req.file)
    foreach ($p in @($req.params)) { if ($null -ne $p) { [void]$ps.AddParameter([string]$p[0], [string]$p[1]) } }
    [Console]::SetOut($o)
    [Console]::SetError($e)
    try {
      $res = $ps.Invoke()
      $x = $rs.SessionStateProxy.GetVariable('LASTEXITCODE')
      if ($ps.InvocationStateInfo.State -eq 'Failed') { $code = 1 } elseif ($null -ne $x) { $code = [int]$x }
    } catch {
      $ex = $_.Exception
      while ($ex -is [Management.Automation.MethodInvocationException] -and $null -ne $ex.InnerException) { $ex = $ex.InnerException }
      # -ErrorAction Stop wraps the error that stopped the script: print that one, as -File does.
      if ($ex -is [Management.Automation.ActionPreferenceStopException] -and $null -ne $ex.ErrorRecord) { $ex = $ex.ErrorRecord.Exception }
      $e.Write($ex.Message + "`n")
      $code = 1
      $res = @()
    }
    foreach ($i in $ps.Streams.Information) { $o.Write([string]$i.MessageData + "`n") }
    if ($res.Count -gt 0) { $o.Write(($res | Out-String)) }
    foreach ($r in $ps.Streams.Error) { $e.Write($r.ToString() + "`n") }
  } catch {
    $e.Write('warm agent: ' + $_.Exception.Message + "`n")
    $code = 1
  } finally {
    [Console]::SetOut($reply)
    [Console]::SetError($replyErr)
    if ($null -ne $ps) { $ps.Dispose() }
    if ($null -ne $rs) { $rs.Dispose() }
    $o.Dispose()
    $e.Dispose()
  }
  $reply.Write('RUBICON-WARM-AGENT ' + $req.id + ' rc ' + $code + "`n")
  $reply.Flush()
}
