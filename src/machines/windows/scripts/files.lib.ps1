# Rubicon script library: files (included by capture, landing)
# Version: 1
#
# robocopy and icacls helpers shared by the scripts that name "# Include:
# files". Only defines functions.

# ---------------------------------------------------------------- robocopy

function Get-RobocopyExitInfo {
  # Pure: robocopy's exit code is a bit mask: 1 files copied, 2 extra files
  # in the destination, 4 mismatched, 8 some copies failed, 16 serious
  # error (nothing copied). Any value of 8 or more is a failure.
  param([Parameter(Mandatory = $true)][int]$ExitCode)
  $bits = New-Object System.Collections.Generic.List[string]
  if ($ExitCode -band 1) { $bits.Add('copied') }
  if ($ExitCode -band 2) { $bits.Add('extra') }
  if ($ExitCode -band 4) { $bits.Add('mismatched') }
  if ($ExitCode -band 8) { $bits.Add('failed') }
  if ($ExitCode -band 16) { $bits.Add('fatal') }
  return [ordered]@{ exitCode = $ExitCode; bits = $bits.ToArray(); failed = ($ExitCode -ge 8 -or $ExitCode -lt 0) }
}

function Get-RobocopyLogErrors {
  # Pure: the errors of a robocopy log, one per path and code, with the
  # number of attempts (each retry logs the error again). An error line is
  # "<yyyy/mm/dd hh:mm:ss> ERROR <n> (0x<hex>) <action> <path>" with the
  # system message on the next line. The words are localized ("ERRO 5
  # (0x00000005) Copiando Arquivo"), so only the "<n> (0x<hex>)" pair and
  # the path (from one of -Roots, the source and destination given to
  # robocopy, or else from its drive letter or UNC start) are read.
  param([string[]]$Lines, [string[]]$Roots = @())
  $errors = New-Object System.Collections.Generic.List[object]
  $seen = @{}
  for ($i = 0; $i -lt $Lines.Count; $i++) {
    $m = [regex]::Match($Lines[$i], '^\s*\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} \S+ (\d+) \(0x([0-9A-Fa-f]{8})\) (.*)$')
    if (-not $m.Success) { continue }
    $rest = $m.Groups[3].Value
    $path = $null
    foreach ($root in $Roots) {
      $at = $rest.IndexOf($root, [System.StringComparison]::OrdinalIgnoreCase)
      if ($at -ge 0) { $path = $rest.Substring($at).Trim(); break }
    }
    if ($null -eq $path) {
      $pm = [regex]::Match($rest, '([A-Za-z]:\\.*|\\\\.*)$')
      if ($pm.Success) { $path = $pm.Groups[1].Value.Trim() }
    }
    $message = $null
    if ($i + 1 -lt $Lines.Count -and $Lines[$i + 1].Trim().Length -gt 0 -and -not [regex]::IsMatch($Lines[$i + 1], '^\s*\d{4}/\d{2}/\d{2} ')) { $message = $Lines[$i + 1].Trim() }
    $code = [int]$m.Groups[1].Value
    $k = [string]$code + '|' + $path
    if ($seen.ContainsKey($k)) { $seen[$k].attempts++; continue }
    $e = [ordered]@{ code = $code; path = $path; message = $message; attempts = 1 }
    $seen[$k] = $e
    $errors.Add($e)
  }
  return , ($errors.ToArray())
}

function Invoke-RubiconRobocopy {
  # One robocopy run with a Unicode log; returns the exit bits, the errors
  # read from the log (named files) and whether it failed (exit >= 8).
  param([Parameter(Mandatory = $true)][string]$Source, [Parameter(Mandatory = $true)][string]$Destination, [Parameter(Mandatory = $true)][string]$LogPath, [string[]]$Options)
  $src = $Source.TrimEnd('\')
  $dst = $Destination.TrimEnd('\')
  if ($src -match '^[A-Za-z]:$') { $src += '\.' }
  if ($dst -match '^[A-Za-z]:$') { $dst += '\.' }
  $argv = @($src, $dst) + $Options + @('/R:2', '/W:1', '/NP', '/NDL', '/NFL', '/BYTES', ('/UNILOG:' + $LogPath))
  $r = Invoke-RubiconNative -FilePath 'robocopy' -ArgumentList $argv
  $info = Get-RobocopyExitInfo $r.exitCode
  $logLines = @()
  if (Test-Path -LiteralPath $LogPath) { $logLines = @((Read-RubiconTextFile $LogPath) -split "`r?`n") }
  $errors = Get-RobocopyLogErrors $logLines @($src, $dst)
  foreach ($e in $errors) {
    # relativePath: the failed entry relative to the source, '/' separated.
    $e['relativePath'] = $null
    if ($null -ne $e.path -and $e.path.StartsWith($src, [System.StringComparison]::OrdinalIgnoreCase)) { $e['relativePath'] = $e.path.Substring($src.Length).Trim('\').Replace('\', '/') }
  }
  $info['errors'] = $errors
  $info['logPath'] = $LogPath
  return $info
}

# ---------------------------------------------------------------- SMB shares

function Connect-RubiconShare {
  # Maps \\server\share for this process's logon session with the user and
  # the password on the first line of PasswordFile, which is deleted as
  # soon as it is read (the orchestrator wrote it into the grant's folder;
  # the grant's revoke removes that folder too). New-SmbMapping runs in this
  # process: the password is never on a command line (net use takes it as
  # an argument) and never in the script's output or errors. Not
  # persistent, no drive letter. A mapping left by an earlier run is
  # removed first (one user per server: Windows error 1219 otherwise).
  # SHARE_CONNECT_FAILED when the share refuses or cannot be reached.
  # Returns { root, user, disconnected: false }.
  param([Parameter(Mandatory = $true)][string]$Root, [Parameter(Mandatory = $true)][string]$User, [Parameter(Mandatory = $true)][string]$PasswordFile)
  if (-not (Test-Path -LiteralPath $PasswordFile -PathType Leaf)) { throw (New-RubiconError 'SHARE_CONNECT_FAILED' ('the password file for ' + $Root + ' is missing (' + $PasswordFile + ')') ([ordered]@{ root = $Root })) }
  $text = [System.Text.Encoding]::UTF8.GetString([System.IO.File]::ReadAllBytes($PasswordFile))
  try { [System.IO.File]::Delete($PasswordFile) } catch { $null = $_ }
  $password = ($text -split "`r?`n")[0]
  $text = $null
  if ($password.Length -eq 0) { throw (New-RubiconError 'SHARE_CONNECT_FAILED' ('the password file for ' + $Root + ' is empty') ([ordered]@{ root = $Root })) }
  try { $null = @(Get-SmbMapping -RemotePath $Root -ErrorAction Stop) | ForEach-Object { Remove-SmbMapping -RemotePath $Root -Force -UpdateProfile -ErrorAction Stop } } catch { $null = $_ }
  try {
    $null = New-SmbMapping -RemotePath $Root -UserName $User -Password $password -Persistent $false -ErrorAction Stop
  } catch {
    # The exception's message is Windows' (e.g. "The user name or password is incorrect."); it never holds the password.
    $msg = $_.Exception.Message
    $password = $null
    throw (New-RubiconError 'SHARE_CONNECT_FAILED' ('cannot connect to ' + $Root + ' as ' + $User + ': ' + $msg) ([ordered]@{ root = $Root; user = $User }))
  }
  $password = $null
  return [ordered]@{ root = $Root; user = $User; disconnected = $false }
}

function Disconnect-RubiconShare {
  # Removes this session's mapping of Root; true when it is gone. Never throws.
  param([Parameter(Mandatory = $true)][string]$Root)
  try { Remove-SmbMapping -RemotePath $Root -Force -UpdateProfile -ErrorAction Stop; return $true } catch { return $false }
}

# ---------------------------------------------------------------- icacls

function Read-IcaclsSaveFile {
  # Pure over the file: an icacls /save file is UTF-16LE text, pairs of
  # lines: a name relative to the folder /restore is given, then its SDDL
  # (starting with D:). Returns {names, sids (distinct, explicit in DACLs)}.
  param([Parameter(Mandatory = $true)][string]$Path)
  $lines = @((Read-RubiconTextFile $Path) -split "`r?`n" | Where-Object { $_.Length -gt 0 })
  $names = New-Object System.Collections.Generic.List[string]
  $sids = New-Object System.Collections.Generic.List[string]
  for ($i = 0; $i + 1 -lt $lines.Count; $i += 2) {
    $names.Add($lines[$i])
    foreach ($m in [regex]::Matches($lines[$i + 1], 'S-1-[0-9]+(?:-[0-9]+)+')) { if (-not $sids.Contains($m.Value)) { $sids.Add($m.Value) } }
  }
  return [ordered]@{ names = $names.ToArray(); sids = $sids.ToArray() }
}

function Invoke-RubiconIcaclsSave {
  # icacls <folder> /save <file> /t /c /q: the DACLs of the folder and
  # everything below, named relative to the folder's parent (so /restore on
  # the parent puts them back). icacls does not save owners, SACLs or
  # integrity labels. Returns {exitCode, failed, processed, failedCount,
  # savePath, sha256, bytes, entries, sids}.
  param([Parameter(Mandatory = $true)][string]$Folder, [Parameter(Mandatory = $true)][string]$SavePath)
  $dir = [System.IO.Path]::GetDirectoryName($SavePath)
  if ($dir -and -not [System.IO.Directory]::Exists($dir)) { $null = [System.IO.Directory]::CreateDirectory($dir) }
  $r = Invoke-RubiconNative -FilePath 'icacls' -ArgumentList @($Folder.TrimEnd('\'), '/save', $SavePath, '/t', '/c', '/q')
  $counts = Get-IcaclsCounts $r.output
  $info = [ordered]@{ exitCode = $r.exitCode; failed = ($r.exitCode -ne 0 -or $counts.failedCount -gt 0); processed = $counts.processed; failedCount = $counts.failedCount; savePath = $SavePath; sha256 = $null; bytes = 0; entries = 0; sids = @() }
  if (Test-Path -LiteralPath $SavePath -PathType Leaf) {
    $bytes = [System.IO.File]::ReadAllBytes($SavePath)
    $info.sha256 = Get-RubiconSha256Hex $bytes
    $info.bytes = $bytes.Length
    $parsed = Read-IcaclsSaveFile $SavePath
    $info.entries = $parsed.names.Count
    $info.sids = $parsed.sids
  } else { $info.failed = $true }
  return $info
}

function Get-IcaclsCounts {
  # Pure: icacls ends with "Successfully processed N files; Failed
  # processing M files" (localized, so only the two numbers are read).
  param([string[]]$Lines)
  for ($i = $Lines.Count - 1; $i -ge 0; $i--) {
    $m = [regex]::Match($Lines[$i], '(\d+)\D+;\D*(\d+)')
    if ($m.Success) { return [ordered]@{ processed = [int]$m.Groups[1].Value; failedCount = [int]$m.Groups[2].Value } }
  }
  return [ordered]@{ processed = $null; failedCount = $null }
}

function Invoke-RubiconResticBackup {
  # restic backup --json of one folder. --use-fs-snapshot makes restic take
  # its own VSS snapshot (Windows only), independent of the robocopy one.
  # The repository and password come from files on the server, never from
  # the arguments. Exit codes: 0 done, 3 snapshot made but some source
  # data could not be read, 1 (or anything else) failed, no snapshot.
  # Returns {exitCode, failed, complete, snapshotId, summary, errors}.
  param(
    [Parameter(Mandatory = $true)][string]$Source,
    [string]$Repository, [string]$RepositoryFile, [Parameter(Mandatory = $true)][string]$PasswordFile,
    [string[]]$Tags = @(), [string]$HostName, [string]$ResticPath = 'restic', [switch]$UseFsSnapshot,
    [string]$Parent, [string[]]$Options = @(), [string[]]$Exclude = @()
  )
  $argv = New-Object System.Collections.Generic.List[string]
  # Global options first: --option name=value (restic -o) (e.g. sftp.command, the grant's ssh command: a key file path, no secret).
  foreach ($o in $Options) {
    if ($o -notmatch '^[a-z0-9.]+=' -or $o.Contains("`n")) { throw (New-RubiconError 'ARGS_INVALID' ('a restic option must be name=value on one line, not "' + $o + '"')) }
    $argv.Add('--option'); $argv.Add($o)
  }
  foreach ($x in @('backup', '--json', '--password-file', $PasswordFile)) { $argv.Add($x) }
  if ($RepositoryFile) { $argv.Add('--repository-file'); $argv.Add($RepositoryFile) } elseif ($Repository) { $argv.Add('--repo'); $argv.Add($Repository) }
  else { throw (New-RubiconError 'ARGS_INVALID' 'restic needs "repository" or "repositoryFile"') }
  if ($UseFsSnapshot) { $argv.Add('--use-fs-snapshot') }
  foreach ($t in $Tags) { $argv.Add('--tag'); $argv.Add($t) }
  if ($HostName) { $argv.Add('--host'); $argv.Add($HostName) }
  if ($Parent) { $argv.Add('--parent'); $argv.Add($Parent) }
  foreach ($x in $Exclude) { $argv.Add('--exclude'); $argv.Add($x) }
  $argv.Add($Source.TrimEnd('\'))
  $r = Invoke-RubiconNative -FilePath $ResticPath -ArgumentList $argv.ToArray()
  $parsed = Read-ResticBackupOutput $r.output
  $failed = $r.exitCode -ne 0 -or $null -eq $parsed.summary
  return [ordered]@{ exitCode = $r.exitCode; failed = $failed; complete = ($r.exitCode -eq 0 -and $null -ne $parsed.summary); snapshotId = $parsed.snapshotId; summary = $parsed.summary; errors = $parsed.errors }
}

function Read-ResticBackupOutput {
  # Pure: the summary and the errors of restic backup --json output (one
  # JSON object a line; status lines skipped). restic 0.14 writes an error
  # as {"message_type":"error","error":{"Op","Path","Err"}|{},"during","item"},
  # 0.17+ as "error":{"message"}.
  param([string[]]$Lines)
  $summary = $null
  $snapshot = $null
  $errors = New-Object System.Collections.Generic.List[object]
  foreach ($line in $Lines) {
    $l = $line.Trim()
    if (-not $l.StartsWith('{') -or $l.Contains('"message_type":"status"')) { continue }
    try { $m = ConvertFrom-RubiconJson $l } catch { continue }
    if ($m -isnot [System.Collections.IDictionary]) { continue }
    $type = [string]$m['message_type']
    if ($type -eq 'summary') {
      $snapshot = [string]$m['snapshot_id']
      $summary = [ordered]@{}
      foreach ($k in @('files_new', 'files_changed', 'files_unmodified', 'dirs_new', 'dirs_changed', 'dirs_unmodified', 'data_added', 'total_files_processed', 'total_bytes_processed', 'total_duration')) {
        if ($m.Contains($k)) { $summary[$k] = $m[$k] }
      }
    } elseif ($type -eq 'error') {
      $e = $m['error']
      $message = $null
      if ($e -is [System.Collections.IDictionary]) {
        if ($e.Contains('message')) { $message = [string]$e['message'] }
        elseif ($e.Contains('Op')) { $message = ([string]$e['Op'] + ' ' + [string]$e['Path'] + ': error ' + [string]$e['Err']) }
      }
      $errors.Add([ordered]@{ item = [string]$m['item']; during = [string]$m['during']; message = $message })
    }
  }
  return [ordered]@{ summary = $summary; snapshotId = $snapshot; errors = $errors.ToArray() }
}
