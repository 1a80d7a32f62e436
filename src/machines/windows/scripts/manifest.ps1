# Rubicon script: manifest
# Version: 1
#
# Contract
#   Inputs   { root: string (absolute folder), exclude?: string[] (relative,
#              '/' or '\'), hash?: bool (default true) }
#   Records  one JSON line per entry, in comparePaths order (UTF-16 code
#            units of the relative path, folders keyed "name/", the order of
#            src/files/walk.ts):
#              {kind:"file", path, size, mtimeMs, mode, sha256, stable}
#              {kind:"reparse", path, linkType, target}   not followed
#              {kind:"special", path, type}               fifo, socket, device
#              {kind:"unreadable", path, code, message, size, mtimeMs}
#              {kind:"dir-unreadable", path, code, message}
#            path is relative to root with '/' separators; mtimeMs is
#            milliseconds since 1970 UTC at 100 ns resolution; mode is the
#            Unix permission bits (0o666/0o444 on Windows, as Node reports
#            them there); stable is false when size or mtime changed while
#            the file was read. Codes: ACCESS_DENIED, LOCKED, VANISHED,
#            PATH_TOO_LONG, IO_ERROR.
#   Result   data: { root, files, bytes, reparse, special, unreadable,
#            dirUnreadable, unstable, complete }  complete = nothing
#            unreadable and every file stable.
#   Errors   ARGS_INVALID (root missing or relative), PATH_NOT_FOUND (root
#            is not a folder), ACCESS_DENIED (root cannot be listed).
#   Idempotent and read-only: opens files for reading with FileShare
#   ReadWrite|Delete, never follows a reparse point, never writes. Nothing is
#   skipped silently: every entry that is not hashed is a record saying why.
#   Long paths go through \\?\ on Windows (no-op elsewhere).

function Invoke-RubiconManifest {
  param($A)
  $root = Get-RubiconArg $A 'root' -Required
  $exclude = @(Get-RubiconArg $A 'exclude' -Type array)
  $hash = Get-RubiconArg $A 'hash' -Type bool -Default $true
  if (-not [System.IO.Path]::IsPathRooted($root)) { throw (New-RubiconError 'ARGS_INVALID' ('argument "root" must be an absolute folder, not "' + $root + '"')) }
  $excludes = New-Object 'System.Collections.Generic.HashSet[string]'
  foreach ($e in $exclude) {
    $n = ([string]$e).Replace('\', '/').Trim('/')
    while ($n.StartsWith('./')) { $n = $n.Substring(2) }
    if ($n.Length -eq 0 -or $n -match '(^|/)\.\.?(/|$)') { throw (New-RubiconError 'ARGS_INVALID' ('exclude entry "' + $e + '" must be a relative path inside root')) }
    $null = $excludes.Add($n)
  }
  $long = ConvertTo-RubiconLongPath $root
  if (-not [System.IO.Directory]::Exists($long)) { throw (New-RubiconError 'PATH_NOT_FOUND' ('folder ' + $root + ' does not exist or is not a folder')) }
  $state = [ordered]@{ root = $root; files = 0L; bytes = 0L; reparse = 0L; special = 0L; unreadable = 0L; dirUnreadable = 0L; unstable = 0L; complete = $true }
  $rootInfo = New-Object System.IO.DirectoryInfo $long
  try { $first = Get-RubiconManifestChildren $rootInfo } catch {
    throw (New-RubiconError (Get-RubiconIoErrorCode $_.Exception) ('folder ' + $root + ' cannot be listed: ' + $_.Exception.Message))
  }
  $stack = New-Object System.Collections.Generic.Stack[object]
  $stack.Push(@{ rel = ''; items = $first; i = 0 })
  $buffer = New-Object byte[] 1048576
  $sha = [System.Security.Cryptography.SHA256]::Create()
  try {
    while ($stack.Count -gt 0) {
      $frame = $stack.Peek()
      if ($frame.i -ge $frame.items.Count) { $null = $stack.Pop(); continue }
      $info = $frame.items[$frame.i]
      $frame.i++
      $rel = $info.Name
      if ($frame.rel.Length -gt 0) { $rel = $frame.rel + '/' + $info.Name }
      if (Test-RubiconExcluded $rel $excludes) { continue }
      $attrs = $info.Attributes
      if (($attrs -band [System.IO.FileAttributes]::ReparsePoint) -ne 0) {
        Write-RubiconRecord ('{"kind":"reparse","path":' + (ConvertTo-RubiconJsonString $rel) + ',"linkType":' + (ConvertTo-RubiconJsonString (Get-RubiconLinkType $info)) + ',"target":' + (ConvertTo-RubiconJsonString (Get-RubiconLinkTarget $info)) + '}')
        $state.reparse++
        continue
      }
      if ($info -is [System.IO.DirectoryInfo]) {
        try { $children = Get-RubiconManifestChildren $info } catch {
          $code = Get-RubiconIoErrorCode $_.Exception
          Write-RubiconRecord ('{"kind":"dir-unreadable","path":' + (ConvertTo-RubiconJsonString $rel) + ',"code":"' + $code + '","message":' + (ConvertTo-RubiconJsonString $_.Exception.Message) + '}')
          $state.dirUnreadable++
          $state.complete = $false
          continue
        }
        $stack.Push(@{ rel = $rel; items = $children; i = 0 })
        continue
      }
      $special = Get-RubiconSpecialType $info
      if ($null -ne $special) {
        Write-RubiconRecord ('{"kind":"special","path":' + (ConvertTo-RubiconJsonString $rel) + ',"type":"' + $special + '"}')
        $state.special++
        continue
      }
      $size = $info.Length
      $mtime = Get-RubiconMtimeMs $info
      $digest = $null
      $stable = $true
      if ($hash) {
        try {
          $digest = Get-RubiconFileSha256 $info.FullName $sha $buffer
          $info.Refresh()
          if (-not $info.Exists -or $info.Length -ne $size -or (Get-RubiconMtimeMs $info) -ne $mtime) { $stable = $false }
        } catch {
          $code = Get-RubiconIoErrorCode $_.Exception
          Write-RubiconRecord ('{"kind":"unreadable","path":' + (ConvertTo-RubiconJsonString $rel) + ',"code":"' + $code + '","message":' + (ConvertTo-RubiconJsonString (Get-RubiconInnerMessage $_.Exception)) + ',"size":' + $size + ',"mtimeMs":' + $mtime + '}')
          $state.unreadable++
          $state.complete = $false
          continue
        }
      }
      if (-not $stable) { $state.unstable++; $state.complete = $false }
      $digestJson = 'null'
      if ($null -ne $digest) { $digestJson = '"' + $digest + '"' }
      $stableJson = 'true'
      if (-not $stable) { $stableJson = 'false' }
      Write-RubiconRecord ('{"kind":"file","path":' + (ConvertTo-RubiconJsonString $rel) + ',"size":' + $size + ',"mtimeMs":' + $mtime + ',"mode":' + (Get-RubiconFileMode $info) + ',"sha256":' + $digestJson + ',"stable":' + $stableJson + '}')
      $state.files++
      $state.bytes += $size
    }
  } finally { $sha.Dispose() }
  return $state
}

function Get-RubiconManifestChildren {
  # The entries of one folder sorted as comparePaths sorts full paths:
  # ordinal UTF-16 order of the names, a folder keyed as "name/".
  param([System.IO.DirectoryInfo]$Dir)
  $items = @($Dir.EnumerateFileSystemInfos())
  $keys = New-Object string[] $items.Count
  for ($i = 0; $i -lt $items.Count; $i++) {
    $k = $items[$i].Name
    if ($items[$i] -is [System.IO.DirectoryInfo] -and ($items[$i].Attributes -band [System.IO.FileAttributes]::ReparsePoint) -eq 0) { $k += '/' }
    $keys[$i] = $k
  }
  $arr = [object[]]$items
  [System.Array]::Sort($keys, $arr, [System.StringComparer]::Ordinal)
  return , $arr
}

function Test-RubiconExcluded {
  param([string]$Rel, $Excludes)
  if ($Excludes.Count -eq 0) { return $false }
  if ($Excludes.Contains($Rel)) { return $true }
  $i = $Rel.IndexOf('/')
  while ($i -ge 0) {
    if ($Excludes.Contains($Rel.Substring(0, $i))) { return $true }
    $i = $Rel.IndexOf('/', $i + 1)
  }
  return $false
}

function Get-RubiconMtimeMs {
  # Milliseconds since 1970-01-01 UTC at the 100 ns tick resolution of
  # NTFS and .NET, written as an exact decimal.
  param([System.IO.FileSystemInfo]$Info)
  $ticks = $Info.LastWriteTimeUtc.Ticks - 621355968000000000L
  $ms = [decimal]$ticks / [decimal]10000
  return $ms.ToString([System.Globalization.CultureInfo]::InvariantCulture)
}

function Get-RubiconFileMode {
  # Unix permission bits. Windows has none: Node reports 0o444 for a
  # read-only file and 0o666 otherwise, and so does this.
  param([System.IO.FileSystemInfo]$Info)
  if (-not $script:RubiconIsWindows -and $null -ne $Info.PSObject.Properties['UnixFileMode']) { return ([int]$Info.UnixFileMode -band 4095) }
  if (($Info.Attributes -band [System.IO.FileAttributes]::ReadOnly) -ne 0) { return 292 }
  return 438
}

function Get-RubiconSpecialType {
  # FIFOs, sockets and devices exist only outside Windows; opening a FIFO
  # would block. .NET reports them as files of length 0, so only those are
  # looked at (PowerShell 7.4+ adds UnixStat to provider items).
  param([System.IO.FileInfo]$Info)
  if ($script:RubiconIsWindows -or $Info.Length -ne 0) { return $null }
  $item = Get-Item -LiteralPath $Info.FullName -Force -ErrorAction SilentlyContinue
  if ($null -eq $item -or $null -eq $item.PSObject.Properties['UnixStat'] -or $null -eq $item.UnixStat) { return $null }
  $t = [string]$item.UnixStat.ItemType
  switch ($t) {
    'File' { return $null }
    'NamedPipe' { return 'fifo' }
    'Socket' { return 'socket' }
    'CharacterDevice' { return 'char-device' }
    'BlockDevice' { return 'block-device' }
    default { return 'unknown' }
  }
}

function Get-RubiconLinkType {
  param([System.IO.FileSystemInfo]$Info)
  if ($null -ne $Info.PSObject.Properties['LinkType'] -and $null -ne $Info.LinkType) { return [string]$Info.LinkType }
  return 'ReparsePoint'
}

function Get-RubiconLinkTarget {
  # The target as the link states it (not resolved); null when .NET cannot
  # tell (Windows PowerShell 5.1, or a reparse point that is not a link).
  param([System.IO.FileSystemInfo]$Info)
  try {
    if ($null -ne $Info.PSObject.Properties['LinkTarget']) { return [string]$Info.LinkTarget }
    if ($null -ne $Info.PSObject.Properties['Target']) { $t = @($Info.Target); if ($t.Count -gt 0 -and $null -ne $t[0]) { return [string]$t[0] } }
  } catch { $null = $_ }
  return $null
}

function Get-RubiconInnerMessage {
  param($Exception)
  $e = $Exception
  while ($null -ne $e.InnerException -and $e -is [System.Management.Automation.MethodInvocationException]) { $e = $e.InnerException }
  return $e.Message
}

function Open-RubiconFileForRead {
  # Read-only, sharing read, write and delete, so a file another process
  # has open for writing can still be read; a file opened without sharing
  # fails here as LOCKED. Tests replace this to simulate Windows errors.
  param([string]$Path)
  return New-Object System.IO.FileStream ($Path, [System.IO.FileMode]::Open, [System.IO.FileAccess]::Read, ([System.IO.FileShare]::ReadWrite -bor [System.IO.FileShare]::Delete), 65536, [System.IO.FileOptions]::SequentialScan)
}

function Get-RubiconFileSha256 {
  param([string]$Path, $Sha, [byte[]]$Buffer)
  $s = Open-RubiconFileForRead $Path
  try {
    $null = $Sha.Initialize()
    while ($true) {
      $n = $s.Read($Buffer, 0, $Buffer.Length)
      if ($n -le 0) { break }
      $null = $Sha.TransformBlock($Buffer, 0, $n, $null, 0)
    }
    $null = $Sha.TransformFinalBlock($Buffer, 0, 0)
    return ([System.BitConverter]::ToString($Sha.Hash) -replace '-', '').ToLowerInvariant()
  } finally { $s.Dispose() }
}
