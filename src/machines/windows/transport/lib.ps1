# Rubicon transport library: what the openssh-windows and azure-run-command
# transports run on a Windows machine (Windows PowerShell 5.1 and
# PowerShell 7; the tests run it under PowerShell 7 on Linux).
# Version: 1
#
# Contract of every entry built on it (src/machines/windows/transport.ts):
# - inputs arrive in $RubiconSpec (base64 of "key base64(value)" lines, no
#   secrets) and $RubiconPayload (bytes: a program's stdin or a small file;
#   may be secret: never printed, never in a file name);
# - it prints ASCII frame lines only, in this order, and nothing else on
#   stdout:
#     RUBICON-T1 err <base64>       chunks of the program's stderr
#     RUBICON-T1 out <base64>       chunks of its stdout (or a file read)
#     RUBICON-T1 sum <outBytes> <outSha256> <outCut> <errBytes> <errSha256> <errCut>
#     RUBICON-T1 state <word> [<args>]
#     RUBICON-T1 end
#   so a console code page or a transport that keeps only the tail (Run
#   Command's instance view keeps the last 4 KB) cannot alter a byte
#   unnoticed, and the state is in the tail;
# - never prompts, never writes to the pipeline, exits with the program's
#   exit code where there is one (else 0): the frames are the result.

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$ConfirmPreference = 'None'
$RubiconOnWindows = [Environment]::OSVersion.Platform -eq [PlatformID]::Win32NT

function Write-RubiconLine([string]$Line) {
  [Console]::Out.Write($Line + "`n")
}

function Write-RubiconState([string]$State) {
  Write-RubiconLine ('RUBICON-T1 state ' + $State)
  Write-RubiconLine 'RUBICON-T1 end'
  [Console]::Out.Flush()
}

function ConvertTo-RubiconB64Text([string]$Text) {
  return [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($Text))
}

function Get-RubiconSha256([byte[]]$Bytes) {
  $h = [Security.Cryptography.SHA256]::Create()
  try { return ([BitConverter]::ToString($h.ComputeHash($Bytes)) -replace '-', '').ToLowerInvariant() } finally { $h.Dispose() }
}

# Chunks small enough that whole lines survive in a 4 KB tail.
function Write-RubiconChunks([string]$Kind, [byte[]]$Bytes) {
  $n = 768
  for ($i = 0; $i -lt $Bytes.Length; $i += $n) {
    $len = [Math]::Min($n, $Bytes.Length - $i)
    Write-RubiconLine ('RUBICON-T1 ' + $Kind + ' ' + [Convert]::ToBase64String($Bytes, $i, $len))
  }
}

function Write-RubiconOutput([byte[]]$Out, [bool]$OutCut, [byte[]]$Err, [bool]$ErrCut) {
  Write-RubiconChunks 'err' $Err
  Write-RubiconChunks 'out' $Out
  Write-RubiconLine ('RUBICON-T1 sum ' + $Out.Length + ' ' + (Get-RubiconSha256 $Out) + ' ' + [int]$OutCut + ' ' + $Err.Length + ' ' + (Get-RubiconSha256 $Err) + ' ' + [int]$ErrCut)
}

# The error state: the message travels base64 (it may hold any character), with the HRESULT for classification.
function Write-RubiconError($ErrorRecord) {
  $ex = $ErrorRecord.Exception
  while ($ex -is [Management.Automation.MethodInvocationException] -and $null -ne $ex.InnerException) { $ex = $ex.InnerException }
  Write-RubiconState ('error ' + (ConvertTo-RubiconB64Text $ex.Message) + ' ' + $ex.HResult)
}

function Read-RubiconSpec([string]$Spec) {
  $h = @{}
  if ($Spec -eq '') { return $h }
  foreach ($line in ([Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($Spec)) -split "`n")) {
    if ($line -eq '') { continue }
    $i = $line.IndexOf(' ')
    $h[$line.Substring(0, $i)] = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($line.Substring($i + 1)))
  }
  return $h
}

# The first $Max bytes of a stream's content, and whether there was more.
function Get-RubiconHead([IO.Stream]$Stream, [long]$Max) {
  $len = $Stream.Length
  $n = [int][Math]::Min($len, $Max)
  $buf = New-Object byte[] $n
  [void]$Stream.Seek(0, [IO.SeekOrigin]::Begin)
  $read = 0
  while ($read -lt $n) {
    $k = $Stream.Read($buf, $read, $n - $read)
    if ($k -le 0) { break }
    $read += $k
  }
  return @{ bytes = $buf; cut = ($len -gt $Max) }
}

function Get-RubiconFileHead([string]$Path, [long]$Max) {
  if (-not [IO.File]::Exists($Path)) { return @{ bytes = (New-Object byte[] 0); cut = $false } }
  $fs = New-Object IO.FileStream($Path, [IO.FileMode]::Open, [IO.FileAccess]::Read, [IO.FileShare]::ReadWrite)
  try { return (Get-RubiconHead $fs $Max) } finally { $fs.Dispose() }
}

# Owner-only access (what mode 0600/0700 means on Linux): on Windows a
# protected DACL for the current user, SYSTEM and Administrators (inherited
# by what a folder holds); a group/other bit keeps the inherited ACL.
# Windows-only branch: never run here.
function Set-RubiconMode([string]$Path, [int]$Mode, [bool]$Folder = $false) {
  if ($RubiconOnWindows) {
    if (($Mode -band 63) -ne 0) { return }
    $sids = @([Security.Principal.WindowsIdentity]::GetCurrent().User, (New-Object Security.Principal.SecurityIdentifier 'S-1-5-18'), (New-Object Security.Principal.SecurityIdentifier 'S-1-5-32-544'))
    if ($Folder) {
      $acl = New-Object System.Security.AccessControl.DirectorySecurity
      $inherit = [System.Security.AccessControl.InheritanceFlags]'ContainerInherit, ObjectInherit'
    } else {
      $acl = New-Object System.Security.AccessControl.FileSecurity
      $inherit = [System.Security.AccessControl.InheritanceFlags]::None
    }
    $acl.SetAccessRuleProtection($true, $false)
    foreach ($sid in $sids) {
      $acl.AddAccessRule((New-Object System.Security.AccessControl.FileSystemAccessRule($sid, [System.Security.AccessControl.FileSystemRights]::FullControl, $inherit, [System.Security.AccessControl.PropagationFlags]::None, [System.Security.AccessControl.AccessControlType]::Allow)))
    }
    Set-Acl -LiteralPath $Path -AclObject $acl
    return
  }
  [IO.File]::SetUnixFileMode($Path, [IO.UnixFileMode]$Mode)
}

# A step folder: created owner-only (a step's output may hold patient data).
function New-RubiconPrivateFolder([string]$Dir) {
  if ([IO.Directory]::Exists($Dir)) { return }
  [void][IO.Directory]::CreateDirectory($Dir)
  Set-RubiconMode $Dir 448 $true
}

# Atomic: a temp file beside the target (mode set before any byte is
# written), then Move-Item -Force over the target. Creates the folder.
function Write-RubiconFile([string]$Path, [byte[]]$Bytes, [int]$Mode) {
  $dir = [IO.Path]::GetDirectoryName($Path)
  if ($null -ne $dir -and $dir -ne '') { [void][IO.Directory]::CreateDirectory($dir) }
  $tmp = $Path + '.rubicon-tmp.' + $PID
  try {
    [IO.File]::WriteAllBytes($tmp, (New-Object byte[] 0))
    if ($Mode -ge 0) { Set-RubiconMode $tmp $Mode }
    [IO.File]::WriteAllBytes($tmp, $Bytes)
    Move-Item -LiteralPath $tmp -Destination $Path -Force
  } catch {
    if ([IO.File]::Exists($tmp)) { [IO.File]::Delete($tmp) }
    throw
  }
}

function Write-RubiconText([string]$Path, [string]$Text) {
  Write-RubiconFile $Path ([Text.Encoding]::UTF8.GetBytes($Text)) -1
}

# Kills a process and everything it started. Idempotent.
function Stop-RubiconTree([int]$ProcessId) {
  if ($RubiconOnWindows) {
    $psi = New-Object System.Diagnostics.ProcessStartInfo
    $psi.FileName = 'taskkill.exe'
    $psi.Arguments = '/PID ' + $ProcessId + ' /T /F'
    $psi.UseShellExecute = $false
    $psi.CreateNoWindow = $true
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    try {
      $k = [Diagnostics.Process]::Start($psi)
      [void]$k.StandardOutput.ReadToEnd()
      [void]$k.StandardError.ReadToEnd()
      $k.WaitForExit()
    } catch { }
    return
  }
  try { [Diagnostics.Process]::GetProcessById($ProcessId).Kill($true) } catch { }
}

# Runs the program of $In (file, args as one Windows command line, cwd,
# env.NAME) without a shell, to its end or to the deadline (then its tree is
# killed and the code is 124, as coreutils timeout). stdout/stderr are copied
# into the given streams, stdin is fed from $StdIn and closed. Codes: the
# program's own; 124 deadline; 125 the working folder is missing; 127 the
# program cannot be started (message in .message).
function Invoke-RubiconProgram($In, [byte[]]$StdIn, [IO.Stream]$Out, [IO.Stream]$Err, [int]$DeadlineSeconds) {
  if ($In['cwd'] -ne '' -and -not [IO.Directory]::Exists($In['cwd'])) {
    return @{ code = 125; timedOut = $false; message = 'rubicon: the working folder ' + $In['cwd'] + ' does not exist' }
  }
  $psi = New-Object System.Diagnostics.ProcessStartInfo
  $psi.FileName = $In['file']
  $psi.Arguments = $In['args']
  $psi.UseShellExecute = $false
  $psi.CreateNoWindow = $true
  $psi.RedirectStandardInput = $true
  $psi.RedirectStandardOutput = $true
  $psi.RedirectStandardError = $true
  if ($In['cwd'] -ne '') { $psi.WorkingDirectory = $In['cwd'] }
  foreach ($k in @($In.Keys)) {
    if ($k.StartsWith('env.')) { $psi.EnvironmentVariables[$k.Substring(4)] = $In[$k] }
  }
  try {
    $p = [Diagnostics.Process]::Start($psi)
  } catch {
    $ex = $_.Exception
    while ($null -ne $ex.InnerException) { $ex = $ex.InnerException }
    return @{ code = 127; timedOut = $false; message = 'rubicon: ' + $In['file'] + ': not found or not startable (' + $ex.Message + ')' }
  }
  $to = $p.StandardOutput.BaseStream.CopyToAsync($Out)
  $te = $p.StandardError.BaseStream.CopyToAsync($Err)
  $w = $null
  if ($StdIn.Length -gt 0) {
    try { $w = $p.StandardInput.BaseStream.WriteAsync($StdIn, 0, $StdIn.Length) } catch { $w = $null }
  } else {
    $p.StandardInput.Close()
  }
  $sw = [Diagnostics.Stopwatch]::StartNew()
  $timedOut = $false
  while (-not $p.WaitForExit(100)) {
    if ($null -ne $w -and $w.IsCompleted) {
      try { $p.StandardInput.Close() } catch { }
      $w = $null
    }
    if ($DeadlineSeconds -gt 0 -and $sw.Elapsed.TotalSeconds -ge $DeadlineSeconds) {
      $timedOut = $true
      Stop-RubiconTree $p.Id
      [void]$p.WaitForExit(10000)
      break
    }
  }
  if ($null -ne $w) { try { $p.StandardInput.Close() } catch { } }
  # A grandchild that keeps the pipes open must not hang us: wait a bounded time for the copies.
  try { [void]$to.Wait(10000) } catch { }
  try { [void]$te.Wait(10000) } catch { }
  if ($timedOut) { $code = 124 } else { $code = $p.ExitCode }
  return @{ code = $code; timedOut = $timedOut; message = '' }
}

# ---- steps: a folder per step with in, spec, launched, pid, out, err, rc

function Join-RubiconPath([string]$Dir, [string]$Name) {
  return [IO.Path]::Combine($Dir, $Name)
}

function Get-RubiconStartTicks($Process) {
  try { return $Process.StartTime.ToUniversalTime().Ticks } catch { return [long]0 }
}

# The step's process: 'done' (rc), 'alive' (pid alive with its start time, to 2 s: .NET derives it from
# the boot time on Linux), 'starting' (launched less than $Grace s ago, no pid yet), 'dead', 'none'.
function Get-RubiconStepState([string]$Dir, [int]$Grace) {
  if ([IO.File]::Exists((Join-RubiconPath $Dir 'rc'))) { return 'done' }
  $pidFile = Join-RubiconPath $Dir 'pid'
  if ([IO.File]::Exists($pidFile)) {
    $parts = ([IO.File]::ReadAllText($pidFile)).Trim() -split ' '
    $p = Get-Process -Id ([int]$parts[0]) -ErrorAction SilentlyContinue
    if ($null -ne $p) {
      $t = Get-RubiconStartTicks $p
      if ($t -eq 0 -or [Math]::Abs($t - [long]$parts[1]) -lt 20000000) { return 'alive' }
    }
    if ([IO.File]::Exists((Join-RubiconPath $Dir 'rc'))) { return 'done' }
    return 'dead'
  }
  $launched = Join-RubiconPath $Dir 'launched'
  if ([IO.File]::Exists($launched)) {
    $at = [long](([IO.File]::ReadAllText($launched)).Trim())
    if (([DateTime]::UtcNow.Ticks - $at) -lt ([long]$Grace * 10000000)) { return 'starting' }
    return 'dead'
  }
  return 'none'
}

# Waits up to $Seconds for the step to end: 'done', 'running' or 'dead'.
function Wait-RubiconStep([string]$Dir, [int]$Seconds, [int]$Grace) {
  $sw = [Diagnostics.Stopwatch]::StartNew()
  while ($true) {
    $s = Get-RubiconStepState $Dir $Grace
    if ($s -eq 'done') { return 'done' }
    if ($s -eq 'dead' -or $s -eq 'none') { return 'dead' }
    if ($sw.Elapsed.TotalSeconds -ge $Seconds) { return 'running' }
    Start-Sleep -Milliseconds 200
  }
}

# Prints a finished step's output (the first $Max bytes of each stream) and its state.
function Write-RubiconStepDone([string]$Dir, [long]$Max, [string]$How) {
  $rc = ([IO.File]::ReadAllText((Join-RubiconPath $Dir 'rc'))).Trim()
  $o = Get-RubiconFileHead (Join-RubiconPath $Dir 'out') $Max
  $e = Get-RubiconFileHead (Join-RubiconPath $Dir 'err') $Max
  Write-RubiconOutput $o.bytes $o.cut $e.bytes $e.cut
  Write-RubiconState ('done ' + $rc + ' ' + $How)
}

function Clear-RubiconStep([string]$Dir) {
  foreach ($f in @('pid', 'out', 'err', 'launched', 'rc')) {
    $p = Join-RubiconPath $Dir $f
    if ([IO.File]::Exists($p)) { [IO.File]::Delete($p) }
  }
}

# Runs a step's program with its output in the step folder, then writes rc
# (temp + move: rc exists only complete). Used by the detached wrapper
# (openssh-windows) and inline by a Run Command.
function Invoke-RubiconStepProgram([string]$Dir, $In, [int]$DeadlineSeconds) {
  $inFile = Join-RubiconPath $Dir 'in'
  if ([IO.File]::Exists($inFile)) { $stdin = [IO.File]::ReadAllBytes($inFile) } else { $stdin = New-Object byte[] 0 }
  $out = New-Object IO.FileStream((Join-RubiconPath $Dir 'out'), [IO.FileMode]::Create, [IO.FileAccess]::Write, [IO.FileShare]::ReadWrite)
  $err = New-Object IO.FileStream((Join-RubiconPath $Dir 'err'), [IO.FileMode]::Create, [IO.FileAccess]::Write, [IO.FileShare]::ReadWrite)
  try {
    $r = Invoke-RubiconProgram $In $stdin $out $err $DeadlineSeconds
    if ($r.message -ne '') {
      $m = [Text.Encoding]::UTF8.GetBytes($r.message + "`n")
      $err.Write($m, 0, $m.Length)
    }
  } catch {
    $m = [Text.Encoding]::UTF8.GetBytes('rubicon: the step wrapper failed: ' + $_.Exception.Message + "`n")
    $err.Write($m, 0, $m.Length)
    $r = @{ code = 125 }
  } finally {
    $out.Dispose()
    $err.Dispose()
  }
  Write-RubiconText (Join-RubiconPath $Dir 'rc') ([string]$r.code)
  return $r.code
}
