# Rubicon script: landing
# Version: 3
# Include: files
#
# Contract
#   Inputs   { workDir: string (absolute folder for logs),
#              folders?: [{ source (the vault mirror folder), destination
#                (absolute folder on this server), exact?: bool (default
#                false: robocopy /E adds and overwrites; true: /MIR, which
#                also deletes what the mirror lacks), aclFile?: string (the
#                icacls /save file of capture), logPath?: string, copy?:
#                'DATSO' (default) | 'DATS' | 'DAT' (robocopy's /COPY:, DAT
#                from a NAS share, whose copy holds no Windows security:
#                the ACL file restores it), share?: { root (\\server\share
#                the source lies in), user, passwordFile (deleted once
#                read) }: mapped with New-SmbMapping for this step and
#                removed after, as the capture script does }
#                or, from a restic repository instead of a mirror,
#                { key ([A-Za-z0-9._-], names the staging and done files),
#                destination (must be absent or empty), aclFile?,
#                restic: { snapshot, path (the folder as restic recorded it:
#                /D/EHR/X for D:\EHR\X), repositoryFile, passwordFile,
#                options?: string[] (restic -o values), resticPath? } }],
#              shares?: [{ name, path, description?, access: [{ accountName,
#                accessControlType: Allow|Deny, accessRight: Full|Change|Read }] }],
#              scheduledTasks?: [{ path (e.g. \Vendor\), name, xml (the
#                task's exported XML) }],
#              services?: [{ name, displayName?, pathName? }]  the services
#                the application needs; this script never installs one }
#   Result   data: { folders: [{ source, destination, exact, robocopy:
#              null | {exitCode, bits[], failed, errors[], logPath},
#              restic: null | {snapshot, exitCode, failed, restored,
#              alreadyLanded, errorLines}, acl: null |
#              {exitCode, failed, processed, failedCount, unresolvedSids[]} }],
#              shares: [{ name, path, action: created|updated|unchanged|manual,
#              granted: [ace], extraAccess: [ace] }],
#              scheduledTasks: [{ path, name, logonType, action:
#              registered|manual }],
#              services: [{ name, present }],
#              manualSteps: [{ kind, name, reason, detail }] }
#            reasons: path-missing, path-conflict, account-not-found,
#            needs-password, register-failed, service-missing, sid-unresolved,
#            acl-root-mismatch.
#   Errors   ARGS_INVALID, LANDING_INCOMPLETE (a folder copy failed:
#            robocopy exit >= 8, restic restore exit != 0 or the snapshot
#            lacks the folder, or icacls /restore failed; details: the data
#            above, failed files named), DESTINATION_NOT_EMPTY (a restic
#            folder's destination holds files and no done file says this
#            script put them there).
#   Destructive: writes the destination folders (overwrites files with the
#   mirror's; with exact, deletes files the mirror lacks), replaces their
#   DACLs from the ACL file, creates shares and grants share access (never
#   revokes: extra access is reported), registers scheduled tasks
#   (replacing a task of the same path and name). What it cannot recreate
#   (vendor-installed services, task passwords, accounts that do not exist
#   here) is listed in manualSteps, for a person, before validation.
#   Idempotent: a re-run converges (robocopy skips what is equal, shares
#   that exist with the same path are updated, tasks re-registered).

function Invoke-RubiconLanding {
  param($A)
  $workDir = Get-RubiconArg $A 'workDir' -Required
  $folders = @(Get-RubiconArg $A 'folders' -Type array)
  $shares = @(Get-RubiconArg $A 'shares' -Type array)
  $tasks = @(Get-RubiconArg $A 'scheduledTasks' -Type array)
  $services = @(Get-RubiconArg $A 'services' -Type array)
  if (-not (Test-Path -LiteralPath $workDir -PathType Container)) { $null = New-Item -ItemType Directory -Path $workDir -Force }
  $manual = New-Object System.Collections.Generic.List[object]
  $folderResults = New-Object System.Collections.Generic.List[object]
  $i = 0
  foreach ($f in $folders) {
    $folderResults.Add((Invoke-RubiconLandFolder $f $workDir $i $manual))
    $i++
  }
  $shareResults = New-Object System.Collections.Generic.List[object]
  foreach ($s in $shares) { $shareResults.Add((Invoke-RubiconLandShare $s $manual)) }
  $taskResults = New-Object System.Collections.Generic.List[object]
  foreach ($t in $tasks) { $taskResults.Add((Invoke-RubiconLandTask $t $manual)) }
  $serviceResults = New-Object System.Collections.Generic.List[object]
  foreach ($s in $services) {
    $name = Get-RubiconArg $s 'name' -Required
    $present = @(Get-CimInstance -ClassName Win32_Service -Filter ("Name='" + ($name -replace "'", '') + "'")).Count -gt 0
    if (-not $present) {
      $was = Get-RubiconArg $s 'pathName' -Default ''
      $manual.Add([ordered]@{ kind = 'service'; name = $name; reason = 'service-missing'; detail = ('install the vendor software that provides service ' + $name + $(if ($was) { ' (it ran ' + $was + ')' } else { '' }) + '; Rubicon does not install services') })
    }
    $serviceResults.Add([ordered]@{ name = $name; present = $present })
  }
  $data = [ordered]@{ folders = $folderResults.ToArray(); shares = $shareResults.ToArray(); scheduledTasks = $taskResults.ToArray(); services = $serviceResults.ToArray(); manualSteps = $manual.ToArray() }
  $failed = @($data.folders | Where-Object { ($null -ne $_.robocopy -and $_.robocopy.failed) -or ($null -ne $_.restic -and $_.restic.failed) -or ($null -ne $_.acl -and $_.acl.failed) })
  if ($failed.Count -gt 0) {
    throw (New-RubiconError 'LANDING_INCOMPLETE' ('landing is incomplete: ' + (($failed | ForEach-Object { $_.destination }) -join ', ') + ' could not be restored completely') $data)
  }
  return $data
}

function Invoke-RubiconLandFolder {
  param($F, [string]$WorkDir, [int]$Index, $Manual)
  if ($null -ne (Get-RubiconArg $F 'restic' -Type object)) { return (Invoke-RubiconLandResticFolder $F $WorkDir $Manual) }
  $source = Get-RubiconArg $F 'source' -Required
  $destination = Get-RubiconArg $F 'destination' -Required
  $exact = Get-RubiconArg $F 'exact' -Type bool -Default $false
  $aclFile = Get-RubiconArg $F 'aclFile'
  if (-not [System.IO.Path]::IsPathRooted($destination)) { throw (New-RubiconError 'ARGS_INVALID' ('folder destination "' + $destination + '" must be absolute')) }
  if (Test-RubiconPathInside $destination $source) { throw (New-RubiconError 'ARGS_INVALID' ('folder destination ' + $destination + ' lies inside its source ' + $source)) }
  $log = Get-RubiconArg $F 'logPath' -Default (Join-Path $WorkDir ('landing-' + $Index + '.robocopy.log'))
  $copy = Get-RubiconArg $F 'copy' -Default 'DATSO'
  if ($copy -notmatch '^(DATSO|DATS|DAT)$') { throw (New-RubiconError 'ARGS_INVALID' ('folder "copy" must be DATSO, DATS or DAT, not "' + $copy + '"')) }
  $share = Get-RubiconArg $F 'share' -Type object
  $shareInfo = $null
  if ($null -ne $share) {
    $shareRoot = (Get-RubiconArg $share 'root' -Required).TrimEnd('\')
    if ($shareRoot -notmatch '^\\\\[^\\]+\\[^\\]+$' -or -not $source.StartsWith($shareRoot + '\', [System.StringComparison]::OrdinalIgnoreCase)) { throw (New-RubiconError 'ARGS_INVALID' ('folder source ' + $source + ' does not lie in the share ' + $shareRoot)) }
    $shareInfo = Connect-RubiconShare -Root $shareRoot -User (Get-RubiconArg $share 'user' -Required) -PasswordFile (Get-RubiconArg $share 'passwordFile' -Required)
  }
  $mode = '/E'
  if ($exact) { $mode = '/MIR' }
  try {
    $r = Invoke-RubiconRobocopy -Source $source -Destination $destination -LogPath $log -Options @($mode, '/B', ('/COPY:' + $copy), '/DCOPY:DAT', '/XJ')
  } finally {
    if ($null -ne $shareInfo) { $shareInfo.disconnected = Disconnect-RubiconShare $shareInfo.root }
  }
  $aclResult = $null
  if ($aclFile -and -not $r.failed) { $aclResult = Restore-RubiconAcl $destination $aclFile $Manual }
  return [ordered]@{ source = $source; destination = $destination; exact = $exact; robocopy = [ordered]@{ exitCode = $r.exitCode; bits = $r.bits; failed = $r.failed; errors = $r.errors; logPath = $r.logPath; share = $shareInfo }; restic = $null; acl = $aclResult }
}

function Test-RubiconFolderEmpty {
  param([string]$Path)
  return (@([System.IO.Directory]::EnumerateFileSystemEntries($Path)).Count -eq 0)
}

function Invoke-RubiconLandResticFolder {
  # restic restore <snapshot> --target <destination>.rubicon-staging, then
  # the captured folder inside the staging (restic keeps absolute paths:
  # D:\EHR\X is /D/EHR/X in the snapshot, <staging>\D\EHR\X here) is
  # moved to the destination in one rename (same parent, same volume), the
  # staging removed, a done file <workDir>\<key>.landed written. A re-run
  # finding the done file and the destination skips the restore (the ACLs
  # are restored again: idempotent). restic restore does not restore
  # Windows ACLs (0.14): icacls /restore does, from the capture's file.
  param($F, [string]$WorkDir, $Manual)
  $key = Get-RubiconArg $F 'key' -Required
  if ($key -notmatch '^[A-Za-z0-9._-]{1,100}$') { throw (New-RubiconError 'ARGS_INVALID' ('argument "key" must be 1-100 of A-Z a-z 0-9 . _ -, not "' + $key + '"')) }
  $destination = Get-RubiconArg $F 'destination' -Required
  if ($destination.Length -gt 3) { $destination = $destination.TrimEnd('\', '/') }
  if (-not [System.IO.Path]::IsPathRooted($destination) -or (Test-RubiconVolumeRoot $destination)) { throw (New-RubiconError 'ARGS_INVALID' ('folder destination "' + $destination + '" must be an absolute folder other than a volume root')) }
  $aclFile = Get-RubiconArg $F 'aclFile'
  $rs = Get-RubiconArg $F 'restic' -Type object
  $snapshot = Get-RubiconArg $rs 'snapshot' -Required
  if ($snapshot -notmatch '^[0-9a-f]{64}$') { throw (New-RubiconError 'ARGS_INVALID' ('restic "snapshot" must be a full snapshot id, not "' + $snapshot + '"')) }
  $inSnapshot = Get-RubiconArg $rs 'path' -Required
  $done = Join-Path $WorkDir ($key + '.landed')
  $staging = $destination + '.rubicon-staging'
  $result = [ordered]@{ snapshot = $snapshot; exitCode = $null; failed = $false; restored = $false; alreadyLanded = $false; errorLines = 0 }
  if ((Test-Path -LiteralPath $done -PathType Leaf) -and (Test-Path -LiteralPath $destination -PathType Container)) {
    $result.alreadyLanded = $true
  } else {
    if ((Test-Path -LiteralPath $destination -PathType Container) -and -not (Test-RubiconFolderEmpty $destination)) {
      throw (New-RubiconError 'DESTINATION_NOT_EMPTY' ('cannot land into ' + $destination + ': the folder is not empty') ([ordered]@{ destination = $destination }))
    }
    if (Test-Path -LiteralPath $staging) { Remove-Item -LiteralPath $staging -Recurse -Force }
    $argv = New-Object System.Collections.Generic.List[string]
    foreach ($o in @(Get-RubiconArg $rs 'options' -Type array)) {
      if ([string]$o -notmatch '^[a-z0-9.]+=' -or ([string]$o).Contains("`n")) { throw (New-RubiconError 'ARGS_INVALID' ('a restic option must be name=value on one line, not "' + $o + '"')) }
      $argv.Add('--option'); $argv.Add([string]$o)
    }
    # --no-lock: a read grant's sftp is read-only; --no-cache: nothing of the repository stays on this server.
    foreach ($x in @('--repository-file', (Get-RubiconArg $rs 'repositoryFile' -Required), '--password-file', (Get-RubiconArg $rs 'passwordFile' -Required), '--no-lock', '--no-cache', 'restore', $snapshot, '--target', $staging)) { $argv.Add($x) }
    $r = Invoke-RubiconNative -FilePath (Get-RubiconArg $rs 'resticPath' -Default 'restic') -ArgumentList $argv.ToArray()
    $result.exitCode = $r.exitCode
    # restic restore prints "ignoring error for <path>: ..." per file it could not write; counted, never copied.
    $result.errorLines = @($r.output | Where-Object { $_ -match '^ignoring error for ' }).Count
    $inner = $staging
    foreach ($part in ($inSnapshot -split '/')) { if ($part.Length -gt 0) { $inner = Join-Path $inner $part } }
    if ($r.exitCode -ne 0 -or $result.errorLines -gt 0 -or -not (Test-Path -LiteralPath $inner -PathType Container)) {
      $result.failed = $true
      if ($r.exitCode -eq 0 -and $result.errorLines -eq 0) { $result.exitCode = 92 }
    } else {
      if (Test-Path -LiteralPath $destination -PathType Container) { [System.IO.Directory]::Delete($destination, $false) }
      $parent = [System.IO.Path]::GetDirectoryName($destination)
      if ($parent -and -not [System.IO.Directory]::Exists($parent)) { $null = [System.IO.Directory]::CreateDirectory($parent) }
      [System.IO.Directory]::Move($inner, $destination)
      [System.IO.File]::WriteAllText($done, $destination, (New-Object System.Text.UTF8Encoding $false))
      $result.restored = $true
    }
    if (Test-Path -LiteralPath $staging) { Remove-Item -LiteralPath $staging -Recurse -Force }
  }
  $aclResult = $null
  if ($aclFile -and -not $result.failed) { $aclResult = Restore-RubiconAcl $destination $aclFile $Manual }
  return [ordered]@{ source = ('restic:' + $snapshot.Substring(0, 8)); destination = $destination; exact = $true; robocopy = $null; restic = $result; acl = $aclResult }
}

function Test-RubiconVolumeRoot {
  # Pure: D:\, D: or /.
  param([string]$Path)
  $p = $Path.TrimEnd('\', '/')
  return ($p.Length -eq 0 -or $p -match '^[A-Za-z]:$')
}

function Restore-RubiconAcl {
  # icacls <parent> /restore <file> /c /q: the names in the file are
  # relative to the captured folder's parent and start with its leaf name,
  # which must be the destination's. SIDs that do not resolve here (local
  # accounts of the old server) become manual steps.
  param([string]$Destination, [string]$AclFile, $Manual)
  $leaf = Split-Path -Leaf $Destination.TrimEnd('\', '/')
  $parent = Split-Path -Parent $Destination.TrimEnd('\', '/')
  $saved = Read-IcaclsSaveFile $AclFile
  $first = ''
  if ($saved.names.Count -gt 0) { $first = (([string]$saved.names[0]) -split '[\\/]')[0] }
  if ($first -ne $leaf -and $first.ToLowerInvariant() -ne $leaf.ToLowerInvariant()) {
    $Manual.Add([ordered]@{ kind = 'acl'; name = $Destination; reason = 'acl-root-mismatch'; detail = ('the ACL file ' + $AclFile + ' was saved for a folder named "' + $first + '", not "' + $leaf + '"; restore it by hand with icacls /restore on the right parent') })
    return [ordered]@{ exitCode = $null; failed = $true; processed = $null; failedCount = $null; unresolvedSids = @() }
  }
  $unresolved = New-Object System.Collections.Generic.List[string]
  foreach ($sid in $saved.sids) {
    if ($null -eq (Resolve-RubiconSid $sid)) {
      $unresolved.Add($sid)
      $Manual.Add([ordered]@{ kind = 'acl'; name = $Destination; reason = 'sid-unresolved'; detail = ('ACL entries for ' + $sid + ' do not resolve on this server (a local account of the old server?); grant its access to an account that exists here') })
    }
  }
  $r = Invoke-RubiconNative -FilePath 'icacls' -ArgumentList @($parent, '/restore', $AclFile, '/c', '/q')
  $counts = Get-IcaclsCounts $r.output
  return [ordered]@{ exitCode = $r.exitCode; failed = ($r.exitCode -ne 0 -or ($null -ne $counts.failedCount -and $counts.failedCount -gt 0)); processed = $counts.processed; failedCount = $counts.failedCount; unresolvedSids = $unresolved.ToArray() }
}

function Resolve-RubiconSid {
  # The account name of a SID on this server, or null when it maps to none.
  param([string]$Sid)
  try { return (New-Object System.Security.Principal.SecurityIdentifier $Sid).Translate([System.Security.Principal.NTAccount]).Value } catch { return $null }
}

function Invoke-RubiconLandShare {
  param($S, $Manual)
  $name = Get-RubiconArg $S 'name' -Required
  $path = Get-RubiconArg $S 'path' -Required
  $description = Get-RubiconArg $S 'description' -Default ''
  $want = @(Get-RubiconArg $S 'access' -Type array | ForEach-Object { [ordered]@{ accountName = [string]$_.accountName; accessControlType = [string]$_.accessControlType; accessRight = [string]$_.accessRight } })
  $result = [ordered]@{ name = $name; path = $path; action = 'manual'; granted = @(); extraAccess = @() }
  if (-not (Test-Path -LiteralPath $path -PathType Container)) {
    $Manual.Add([ordered]@{ kind = 'share'; name = $name; reason = 'path-missing'; detail = ('share ' + $name + ' pointed at ' + $path + ', which does not exist on this server; restore the folder or create the share by hand') })
    return $result
  }
  $existing = @(Get-SmbShare -Name $name -ErrorAction SilentlyContinue)
  try {
    if ($existing.Count -gt 0) {
      if (([string]$existing[0].Path).TrimEnd('\').ToLowerInvariant() -ne $path.TrimEnd('\').ToLowerInvariant()) {
        $Manual.Add([ordered]@{ kind = 'share'; name = $name; reason = 'path-conflict'; detail = ('a share ' + $name + ' already exists here for ' + $existing[0].Path + ', not ' + $path + '; Rubicon leaves it alone') })
        return $result
      }
      $have = @(Get-SmbShareAccess -Name $name | ForEach-Object { [ordered]@{ accountName = [string]$_.AccountName; accessControlType = [string]$_.AccessControlType; accessRight = [string]$_.AccessRight } })
      $granted = New-Object System.Collections.Generic.List[object]
      foreach ($w in $want) {
        if (@($have | Where-Object { $_.accountName -eq $w.accountName -and $_.accessControlType -eq $w.accessControlType -and $_.accessRight -eq $w.accessRight }).Count -gt 0) { continue }
        if ($w.accessControlType -eq 'Deny') { $null = Block-SmbShareAccess -Name $name -AccountName $w.accountName -Force }
        else { $null = Grant-SmbShareAccess -Name $name -AccountName $w.accountName -AccessRight $w.accessRight -Force }
        $granted.Add($w)
      }
      $result.granted = $granted.ToArray()
      $result.extraAccess = @($have | Where-Object { $h = $_; @($want | Where-Object { $_.accountName -eq $h.accountName -and $_.accessControlType -eq $h.accessControlType -and $_.accessRight -eq $h.accessRight }).Count -eq 0 })
      $result.action = 'unchanged'
      if ($granted.Count -gt 0) { $result.action = 'updated' }
      return $result
    }
    $p = @{ Name = $name; Path = $path }
    if ($description) { $p.Description = $description }
    foreach ($pair in @(@('Full', 'FullAccess'), @('Change', 'ChangeAccess'), @('Read', 'ReadAccess'))) {
      $accounts = @($want | Where-Object { $_.accessControlType -eq 'Allow' -and $_.accessRight -eq $pair[0] } | ForEach-Object { $_.accountName })
      if ($accounts.Count -gt 0) { $p[$pair[1]] = [string[]]$accounts }
    }
    $deny = @($want | Where-Object { $_.accessControlType -eq 'Deny' } | ForEach-Object { $_.accountName })
    if ($deny.Count -gt 0) { $p.NoAccess = [string[]]$deny }
    $null = New-SmbShare @p
    $result.granted = $want
    $result.action = 'created'
  } catch {
    $Manual.Add([ordered]@{ kind = 'share'; name = $name; reason = 'account-not-found'; detail = ('share ' + $name + ' could not be created or granted its access: ' + $_.Exception.Message) })
    $result.action = 'manual'
  }
  return $result
}

function Get-RubiconTaskLogonType {
  # Pure: the LogonType of the task XML's first principal (Task Scheduler
  # schema: S4U, Password, InteractiveToken, InteractiveTokenOrPassword,
  # ServiceAccount...), or null.
  param([string]$Xml)
  try { [xml]$doc = $Xml } catch { throw (New-RubiconError 'ARGS_INVALID' 'a scheduled task XML is not well-formed') }
  $node = $doc.SelectSingleNode("//*[local-name()='Principals']/*[local-name()='Principal']/*[local-name()='LogonType']")
  if ($null -eq $node) { return $null }
  return $node.InnerText.Trim()
}

function Invoke-RubiconLandTask {
  param($T, $Manual)
  $name = Get-RubiconArg $T 'name' -Required
  $path = Get-RubiconArg $T 'path' -Default '\'
  $xml = Get-RubiconArg $T 'xml' -Required
  $logon = Get-RubiconTaskLogonType $xml
  $result = [ordered]@{ path = $path; name = $name; logonType = $logon; action = 'manual' }
  if ($logon -eq 'Password' -or $logon -eq 'InteractiveTokenOrPassword') {
    $Manual.Add([ordered]@{ kind = 'scheduledTask'; name = ($path + $name); reason = 'needs-password'; detail = ('task ' + $path + $name + ' runs with a stored password, which cannot be exported; register it by hand with its account password') })
    return $result
  }
  try {
    $null = Register-ScheduledTask -Xml $xml -TaskName $name -TaskPath $path -Force
    $result.action = 'registered'
  } catch {
    $Manual.Add([ordered]@{ kind = 'scheduledTask'; name = ($path + $name); reason = 'register-failed'; detail = ('task ' + $path + $name + ' could not be registered: ' + $_.Exception.Message) })
  }
  return $result
}
