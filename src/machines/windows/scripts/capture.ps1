# Rubicon script: capture
# Version: 3
# Include: files
#
# Contract
#   Inputs   { key: string (the journal step id: names the shadow link and
#              the record of the shadow, [A-Za-z0-9._-]),
#              source: string (absolute folder, e.g. D:\EHR\X),
#              workDir: string (absolute folder on the server for logs and
#              the shadow link, e.g. C:\ProgramData\Rubicon\work),
#              robocopy?: { destination: string (the vault mirror folder,
#                UNC or absolute), logPath?: string, copy?: 'DATSO' (the
#                default) | 'DAT' (no security: into a NAS share, where
#                the ACLs travel in icacls' file), share?: { root
#                (\\server\share, the share the destination lies in),
#                user, passwordFile (a file holding the password on its
#                first line; deleted by this script once read) } },
#              restic?: { repository?: string, repositoryFile?: string,
#                passwordFile: string, tags?: string[], host?: string,
#                parent?: string (a snapshot id), options?: string[]
#                (restic -o values, e.g. sftp.command=...), exclude?:
#                string[] (paths relative to source, '/' separated: the
#                manifest's exclusions), resticPath?: string },
#              acl?: { savePath: string } }
#            At least one of robocopy and restic.
#   Result   data: { key, source, volume,
#              shadow: { id, deviceObject, link, deleted },
#              robocopy: null | { destination, exitCode, bits[], failed,
#                errors: [{code, path, message}], logPath, share: null |
#                { root, user, disconnected } },
#              restic: null | { exitCode, failed, complete, snapshotId,
#                summary, errors: [{item, during, message}] },
#              acl: null | { exitCode, failed, processed, failedCount,
#                savePath, sha256, bytes, entries, sids[] },
#              staleShadowRemoved: string|null,
#              cleanup: { linkRemoved, shadowDeleted, errors[] } }
#   Errors   ARGS_INVALID, PATH_NOT_FOUND, SHARE_CONNECT_FAILED (the share
#            refused the credentials or cannot be reached: nothing was
#            copied, no shadow was made), VSS_CREATE_FAILED (details:
#            returnValue, meaning, retryable), SHADOW_LINK_FAILED,
#            CAPTURE_INCOMPLETE (a method failed: robocopy exit >= 8,
#            restic exit != 0, icacls failed; details: the data above, so
#            the failed files are named).
#   Consistency: a VSS shadow of the source's volume (Win32_ShadowCopy
#   Create, context ClientAccessible: no writers take part, so stop the
#   application first: freeze), linked to <workDir>\<key>.shadow, copied
#   from there by robocopy /MIR /B /COPY:DATSO /DCOPY:DAT /XJ; restic backs
#   up the live source with its own VSS snapshot (--use-fs-snapshot): two
#   independent methods. ACLs are also kept with icacls /save.
#   Share credentials: with robocopy.share the script maps the share for
#   its own logon session with New-SmbMapping (in-process: the password is
#   never on a command line, as `net use` would need it) before the copy
#   and removes the mapping afterwards (Remove-SmbMapping), even when the
#   copy fails. A key-authenticated ssh session has no network
#   credentials of its own, so the mapping must be made in the same step.
#   Destructive only for robocopy's destination (/MIR deletes there what
#   the source lacks; /MIR also overwrites the destination root's ACL). The
#   source is only read. The link and the shadow are removed afterwards,
#   even when a copy fails; a shadow left by a crash is recorded in
#   <workDir>\<key>.shadow.json and removed by the next run with that key.
#   Idempotent: a re-run mirrors again (converges), adds a restic snapshot
#   (deduplicated) and rewrites the ACL file.

function Invoke-RubiconCapture {
  param($A)
  $key = Get-RubiconArg $A 'key' -Required
  $source = Get-RubiconArg $A 'source' -Required
  $workDir = Get-RubiconArg $A 'workDir' -Required
  $rc = Get-RubiconArg $A 'robocopy' -Type object
  $rs = Get-RubiconArg $A 'restic' -Type object
  $acl = Get-RubiconArg $A 'acl' -Type object
  if ($key -notmatch '^[A-Za-z0-9._-]{1,100}$') { throw (New-RubiconError 'ARGS_INVALID' ('argument "key" must be 1-100 of A-Z a-z 0-9 . _ -, not "' + $key + '"')) }
  if ($null -eq $rc -and $null -eq $rs) { throw (New-RubiconError 'ARGS_INVALID' 'capture needs "robocopy" or "restic" (or both)') }
  if ($source.Length -gt 3) { $source = $source.TrimEnd('\', '/') }
  if (-not [System.IO.Path]::IsPathRooted($source) -or $source.StartsWith('\\')) { throw (New-RubiconError 'ARGS_INVALID' ('argument "source" must be a folder on a local volume (D:\...), not "' + $source + '"')) }
  $destination = $null
  $share = $null
  $copy = 'DATSO'
  if ($null -ne $rc) {
    $destination = Get-RubiconArg $rc 'destination' -Required
    $copy = Get-RubiconArg $rc 'copy' -Default 'DATSO'
    if ($copy -notmatch '^(DATSO|DATS|DAT)$') { throw (New-RubiconError 'ARGS_INVALID' ('robocopy "copy" must be DATSO, DATS or DAT, not "' + $copy + '"')) }
    $share = Get-RubiconArg $rc 'share' -Type object
    if ($null -ne $share) {
      $shareRoot = (Get-RubiconArg $share 'root' -Required).TrimEnd('\')
      if ($shareRoot -notmatch '^\\\\[^\\]+\\[^\\]+$') { throw (New-RubiconError 'ARGS_INVALID' ('robocopy share "root" must be \\server\share, not "' + $shareRoot + '"')) }
      if (-not $destination.StartsWith($shareRoot + '\', [System.StringComparison]::OrdinalIgnoreCase)) { throw (New-RubiconError 'ARGS_INVALID' ('robocopy destination ' + $destination + ' does not lie in the share ' + $shareRoot)) }
      $null = Get-RubiconArg $share 'user' -Required
      $null = Get-RubiconArg $share 'passwordFile' -Required
    }
    if (Test-RubiconPathInside $destination $source) { throw (New-RubiconError 'ARGS_INVALID' ('robocopy destination ' + $destination + ' lies inside the source ' + $source)) }
    if (Test-RubiconVolumeOrShareRoot $destination) { throw (New-RubiconError 'ARGS_INVALID' ('robocopy destination ' + $destination + ' is a volume or share root; /MIR would delete everything else there')) }
  }
  if ($null -ne $rs) {
    # Refused before any shadow is made (Invoke-RubiconResticBackup checks the options again).
    $parentArg = Get-RubiconArg $rs 'parent'
    if ($parentArg -and $parentArg -notmatch '^[0-9a-f]{8,64}$') { throw (New-RubiconError 'ARGS_INVALID' ('restic "parent" must be a snapshot id, not "' + $parentArg + '"')) }
    foreach ($o in @(Get-RubiconArg $rs 'options' -Type array)) {
      if ([string]$o -notmatch '^[a-z0-9.]+=' -or ([string]$o).Contains("`n")) { throw (New-RubiconError 'ARGS_INVALID' ('a restic option must be name=value on one line, not "' + $o + '"')) }
    }
  }
  if (-not (Test-Path -LiteralPath $source -PathType Container)) { throw (New-RubiconError 'PATH_NOT_FOUND' ('source folder ' + $source + ' does not exist') ([ordered]@{ source = $source })) }
  if (-not (Test-Path -LiteralPath $workDir -PathType Container)) { $null = New-Item -ItemType Directory -Path $workDir -Force }

  $shareInfo = $null
  if ($null -ne $share) {
    # Before the shadow: a share that refuses the credentials costs no shadow copy.
    $shareInfo = Connect-RubiconShare -Root $shareRoot -User (Get-RubiconArg $share 'user') -PasswordFile (Get-RubiconArg $share 'passwordFile')
  }
  try {
  $volume = [System.IO.Path]::GetPathRoot($source)
  $link = Join-Path $workDir ($key + '.shadow')
  $recordPath = Join-Path $workDir ($key + '.shadow.json')
  $stale = Remove-RubiconStaleShadow $recordPath $link

  $shadow = New-RubiconShadow $volume
  Write-RubiconShadowRecord $recordPath $shadow.id $link
  $data = [ordered]@{ key = $key; source = $source; volume = $volume; shadow = [ordered]@{ id = $shadow.id; deviceObject = $shadow.deviceObject; link = $link; deleted = $false }; robocopy = $null; restic = $null; acl = $null; staleShadowRemoved = $stale; cleanup = $null }
  try {
    New-RubiconShadowLink $link $shadow.deviceObject
    $inShadow = [System.IO.Path]::Combine($link, $source.Substring($volume.Length))
    if ($null -ne $rc) {
      $log = Get-RubiconArg $rc 'logPath' -Default (Join-Path $workDir ($key + '.robocopy.log'))
      $options = @('/MIR', '/B', ('/COPY:' + $copy), '/DCOPY:DAT', '/XJ')
      if ($source.Length -eq $volume.Length) { $options += @('/XD', 'System Volume Information', '$RECYCLE.BIN') }
      $r = Invoke-RubiconRobocopy -Source $inShadow.TrimEnd('\') -Destination $destination -LogPath $log -Options $options
      foreach ($e in $r.errors) {
        # Name failed files by the source, not by the shadow link.
        if ($null -ne $e.relativePath) { $e.path = $source.TrimEnd('\') + '\' + $e.relativePath.Replace('/', '\') }
      }
      $data.robocopy = [ordered]@{ destination = $destination; exitCode = $r.exitCode; bits = $r.bits; failed = $r.failed; errors = $r.errors; logPath = $r.logPath; share = $shareInfo }
    }
    if ($null -ne $rs) {
      $p = @{ Source = $source; PasswordFile = (Get-RubiconArg $rs 'passwordFile' -Required); UseFsSnapshot = $true }
      $repo = Get-RubiconArg $rs 'repository'
      $repoFile = Get-RubiconArg $rs 'repositoryFile'
      if ($repo) { $p.Repository = $repo }
      if ($repoFile) { $p.RepositoryFile = $repoFile }
      $tags = @(Get-RubiconArg $rs 'tags' -Type array)
      if ($tags.Count -gt 0) { $p.Tags = [string[]]$tags }
      $hostName = Get-RubiconArg $rs 'host'
      if ($hostName) { $p.HostName = $hostName }
      $parent = Get-RubiconArg $rs 'parent'
      if ($parent) { $p.Parent = $parent }
      $options = @(Get-RubiconArg $rs 'options' -Type array)
      if ($options.Count -gt 0) { $p.Options = [string[]]$options }
      $exclude = @(Get-RubiconArg $rs 'exclude' -Type array)
      if ($exclude.Count -gt 0) { $p.Exclude = [string[]]@($exclude | ForEach-Object { [System.IO.Path]::Combine($source, ([string]$_).Replace('/', [System.IO.Path]::DirectorySeparatorChar)) }) }
      $p.ResticPath = Get-RubiconArg $rs 'resticPath' -Default 'restic'
      $data.restic = Invoke-RubiconResticBackup @p
    }
    if ($null -ne $acl) {
      $data.acl = Invoke-RubiconIcaclsSave -Folder $source -SavePath (Get-RubiconArg $acl 'savePath' -Required)
    }
  } finally {
    $data.cleanup = Remove-RubiconShadow $shadow.id $link $recordPath
    $data.shadow.deleted = $data.cleanup.shadowDeleted
  }
  } finally {
    if ($null -ne $shareInfo) { $shareInfo.disconnected = Disconnect-RubiconShare $shareInfo.root }
  }
  $failed = New-Object System.Collections.Generic.List[string]
  if ($null -ne $data.robocopy -and $data.robocopy.failed) { $failed.Add('robocopy (exit ' + $data.robocopy.exitCode + ', ' + @($data.robocopy.errors).Count + ' file errors)') }
  if ($null -ne $data.restic -and $data.restic.failed) { $failed.Add('restic (exit ' + $data.restic.exitCode + ', ' + @($data.restic.errors).Count + ' errors)') }
  if ($null -ne $data.acl -and $data.acl.failed) { $failed.Add('icacls /save (exit ' + $data.acl.exitCode + ')') }
  if ($failed.Count -gt 0) { throw (New-RubiconError 'CAPTURE_INCOMPLETE' ('capture of ' + $source + ' is incomplete: ' + ($failed -join '; ')) $data) }
  return $data
}

function Test-RubiconVolumeOrShareRoot {
  # Pure: D:\, D:, \\server\share, \\server\share\ or /.
  param([string]$Path)
  $p = $Path.TrimEnd('\', '/')
  return ($p.Length -eq 0 -or $p -match '^[A-Za-z]:$' -or $p -match '^\\\\[^\\]+\\[^\\]+$')
}

function Get-RubiconVssMeaning {
  # Pure: Win32_ShadowCopy Create return values as documented.
  param([int]$Code)
  $m = @{
    0 = 'success'; 1 = 'access denied'; 2 = 'invalid argument'; 3 = 'the volume was not found'; 4 = 'the volume is not supported'
    5 = 'unsupported shadow copy context'; 6 = 'insufficient storage'; 7 = 'the volume is in use'; 8 = 'the maximum number of shadow copies is reached'
    9 = 'another shadow copy operation is already in progress'; 10 = 'a shadow copy provider vetoed the operation'; 11 = 'the shadow copy provider is not registered'
    12 = 'shadow copy provider failure'; 13 = 'unknown error'
  }
  if ($m.ContainsKey($Code)) { return $m[$Code] }
  return 'undocumented return value'
}

function New-RubiconShadow {
  # Win32_ShadowCopy.Create(Volume, Context) -> ReturnValue, ShadowID; then
  # the new instance's DeviceObject (\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopyN).
  param([string]$Volume)
  $r = Invoke-CimMethod -ClassName Win32_ShadowCopy -MethodName Create -Arguments @{ Volume = $Volume; Context = 'ClientAccessible' }
  $rv = [int]$r.ReturnValue
  if ($rv -ne 0) {
    $meaning = Get-RubiconVssMeaning $rv
    throw (New-RubiconError 'VSS_CREATE_FAILED' ('cannot create a shadow copy of ' + $Volume + ': Win32_ShadowCopy.Create returned ' + $rv + ' (' + $meaning + ')') ([ordered]@{ volume = $Volume; returnValue = $rv; meaning = $meaning; retryable = ($rv -eq 9 -or $rv -eq 7) }))
  }
  $id = [string]$r.ShadowID
  $instance = @(Get-CimInstance -ClassName Win32_ShadowCopy -Filter ("ID='" + $id + "'"))
  if ($instance.Count -eq 0) { throw (New-RubiconError 'VSS_CREATE_FAILED' ('shadow copy ' + $id + ' of ' + $Volume + ' was created but cannot be found') ([ordered]@{ volume = $Volume; returnValue = 0; meaning = 'created but not found'; retryable = $true })) }
  return [ordered]@{ id = $id; deviceObject = [string]$instance[0].DeviceObject }
}

function Write-RubiconShadowRecord {
  param([string]$Path, [string]$Id, [string]$Link)
  [System.IO.File]::WriteAllText($Path, (ConvertTo-RubiconJson ([ordered]@{ shadowId = $Id; link = $Link })), (New-Object System.Text.UTF8Encoding $false))
}

function New-RubiconShadowLink {
  # mklink /d <link> <DeviceObject>\ (the trailing backslash is required);
  # a directory symbolic link, removed with a non-recursive delete.
  param([string]$Link, [string]$DeviceObject)
  $r = Invoke-RubiconNative -FilePath 'cmd.exe' -ArgumentList @('/c', 'mklink', '/d', $Link, ($DeviceObject.TrimEnd('\') + '\'))
  if ($r.exitCode -ne 0) { throw (New-RubiconError 'SHADOW_LINK_FAILED' ('cannot link the shadow copy at ' + $Link + ' (mklink exit ' + $r.exitCode + ')') ([ordered]@{ link = $Link; exitCode = $r.exitCode })) }
}

function Remove-RubiconShadowLink {
  # Directory.Delete(path, recursive: false) removes a directory symbolic
  # link itself and refuses a real, non-empty folder: it can never delete
  # data through the link.
  param([string]$Link)
  if (Test-Path -LiteralPath $Link) { [System.IO.Directory]::Delete($Link, $false) }
}

function Remove-RubiconShadow {
  # Removes the link, then the shadow, then the record; every step is
  # tried even when one fails, and failures are reported, not thrown.
  param([string]$Id, [string]$Link, [string]$RecordPath)
  $errors = New-Object System.Collections.Generic.List[string]
  $linkRemoved = $false
  $shadowDeleted = $false
  try { Remove-RubiconShadowLink $Link; $linkRemoved = $true } catch { $errors.Add('link ' + $Link + ': ' + $_.Exception.Message) }
  try {
    $instance = @(Get-CimInstance -ClassName Win32_ShadowCopy -Filter ("ID='" + $Id + "'"))
    foreach ($i in $instance) { Remove-CimInstance -InputObject $i }
    $shadowDeleted = $true
  } catch { $errors.Add('shadow ' + $Id + ': ' + $_.Exception.Message) }
  if ($linkRemoved -and $shadowDeleted -and (Test-Path -LiteralPath $RecordPath)) { Remove-Item -LiteralPath $RecordPath -Force }
  return [ordered]@{ linkRemoved = $linkRemoved; shadowDeleted = $shadowDeleted; errors = $errors.ToArray() }
}

function Remove-RubiconStaleShadow {
  # A shadow recorded by an earlier run with this key that did not clean
  # up (killed, rebooted): remove it now. Returns its id or null.
  param([string]$RecordPath, [string]$Link)
  if (-not (Test-Path -LiteralPath $RecordPath -PathType Leaf)) {
    Remove-RubiconShadowLink $Link
    return $null
  }
  $rec = ConvertFrom-RubiconJson (Read-RubiconTextFile $RecordPath)
  $c = Remove-RubiconShadow ([string]$rec.shadowId) ([string]$rec.link) $RecordPath
  if (-not ($c.linkRemoved -and $c.shadowDeleted)) { throw (New-RubiconError 'VSS_CREATE_FAILED' ('a shadow copy left by an earlier run (' + $rec.shadowId + ') cannot be removed: ' + ($c.errors -join '; ')) ([ordered]@{ returnValue = $null; meaning = 'stale shadow copy'; retryable = $false })) }
  return [string]$rec.shadowId
}
