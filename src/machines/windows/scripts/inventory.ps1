# Rubicon script: inventory
# Version: 1
#
# Contract
#   Inputs   { sections?: string[] (default all of: services,
#              scheduledTasks, shares, iisSites, iisAppPools, odbcDsns,
#              certificates, programs, volumes, sqlInstances, localUsers,
#              localGroups, firewallRules, hostsFile, environment) }
#   Result   data: { sections: { <name>: { status: ok|unavailable|failed,
#              items: [...], error: null | {code, message} } },
#              referencedFolders: [{ path, exists, references: [{ kind,
#              name, via }] }] }
#            Item shapes are listed beside each Get-Inventory* function and
#            in docs/windows.md. Dates are ISO strings, enums their names,
#            lists always arrays. Items carry the facts a checklist needs
#            ("needsPerson" flags: a non-exportable private key, a task or
#            app pool with a stored password, an ACL entry of a local
#            account).
#            referencedFolders are the folders named by services, tasks,
#            shares, IIS sites, ODBC DSNs and SQL Server data roots, outside
#            %SystemRoot%: how discovery finds data folders nobody listed.
#   Errors   ARGS_INVALID (an unknown section). A section that fails does
#            not fail the inventory: it is reported with its error
#            (unavailable when its module or feature is not installed).
#   Read-only and idempotent. Secrets are left out: ODBC attributes named
#   like a password and machine environment variables named like a secret
#   are reported with value null and redacted true; IIS app pool passwords
#   are never read.

$script:RubiconInventorySections = @('services', 'scheduledTasks', 'shares', 'iisSites', 'iisAppPools', 'odbcDsns', 'certificates', 'programs', 'volumes', 'sqlInstances', 'localUsers', 'localGroups', 'firewallRules', 'hostsFile', 'environment')
$script:RubiconSecretName = '(?i)(pass|pwd|secret|token|credential|apikey|api_key|connectionstring|private)'

function Invoke-RubiconInventory {
  param($A)
  $wanted = @(Get-RubiconArg $A 'sections' -Type array)
  if ($wanted.Count -eq 0) { $wanted = $script:RubiconInventorySections }
  foreach ($w in $wanted) { if ($script:RubiconInventorySections -notcontains $w) { throw (New-RubiconError 'ARGS_INVALID' ('unknown inventory section "' + $w + '"; known: ' + ($script:RubiconInventorySections -join ', '))) } }
  $sections = [ordered]@{}
  $refs = New-RubiconFolderRefs
  foreach ($name in $wanted) {
    $fn = 'Get-Inventory' + $name.Substring(0, 1).ToUpperInvariant() + $name.Substring(1)
    try {
      $items = & $fn $refs
      if ($null -eq $items) { $items = @() }
      $sections[$name] = [ordered]@{ status = 'ok'; items = $items; error = $null }
    } catch {
      $info = Get-RubiconErrorInfo $_
      $status = 'failed'
      if ($info.code -eq 'COMMAND_UNAVAILABLE') { $status = 'unavailable' }
      $sections[$name] = [ordered]@{ status = $status; items = @(); error = [ordered]@{ code = $info.code; message = $info.message } }
    }
  }
  return [ordered]@{ sections = $sections; referencedFolders = (Complete-RubiconFolderRefs $refs) }
}

# ------------------------------------------------------------ helpers

function Get-RubiconProp {
  # A property's value, or $Default when the object lacks it (Windows
  # versions differ; StrictMode would throw).
  param($Object, [string]$Name, $Default = $null)
  if ($null -eq $Object) { return $Default }
  if ($Object -is [System.Collections.IDictionary]) { if ($Object.Contains($Name)) { return $Object[$Name] } else { return $Default } }
  $p = $Object.PSObject.Properties[$Name]
  if ($null -eq $p) { return $Default }
  return $p.Value
}

function ConvertTo-RubiconText {
  param($Value)
  if ($null -eq $Value) { return $null }
  return [string]$Value
}

function ConvertTo-RubiconTime {
  param($Value)
  if ($null -eq $Value) { return $null }
  if ($Value -is [datetime] -or $Value -is [System.DateTimeOffset]) { return (ConvertTo-RubiconIsoTime $Value) }
  return [string]$Value
}

function Assert-RubiconCommand {
  # COMMAND_UNAVAILABLE (the section is "unavailable") when a cmdlet's
  # module or Windows feature is not there.
  param([string[]]$Names)
  foreach ($n in $Names) { if ($null -eq (Get-Command -Name $n -ErrorAction SilentlyContinue)) { throw (New-RubiconError 'COMMAND_UNAVAILABLE' ($n + ' is not available on this server')) } }
}

function New-RubiconFolderRefs { return @{ map = [ordered]@{} } }

function Add-RubiconFolderRef {
  # Records that $Kind $Name refers to $Path (a file or a folder). Paths
  # are normalized: quotes stripped, environment variables expanded, a
  # file replaced by its folder.
  param($Refs, [string]$Path, [string]$Kind, [string]$Name, [string]$Via)
  if ([string]::IsNullOrWhiteSpace($Path)) { return }
  $p = [System.Environment]::ExpandEnvironmentVariables($Path.Trim().Trim('"').Trim())
  if ($p -notmatch '^(?:[A-Za-z]:\\|\\\\[^\\]+\\)') { return }
  $folder = $p.Replace('/', '\').TrimEnd('\')
  if ($folder -match '^[A-Za-z]:$') { $folder += '\' }
  $cut = $folder.LastIndexOf('\')
  $leaf = $folder.Substring($cut + 1)
  if ($leaf -match '\.[A-Za-z0-9]{1,5}$' -and -not (Test-Path -LiteralPath $folder -PathType Container)) {
    # a file: its folder (string work, not Split-Path, so a Windows path stays one on any host)
    $folder = $folder.Substring(0, $cut)
    if ($folder -match '^[A-Za-z]:$') { $folder += '\' }
  }
  if ([string]::IsNullOrEmpty($folder) -or $folder -eq '\\') { return }
  $sysRoot = [System.Environment]::GetEnvironmentVariable('SystemRoot')
  if ($sysRoot -and (Test-RubiconPathInside $folder $sysRoot $true)) { return }
  $k = $folder.ToLowerInvariant()
  if (-not $Refs.map.Contains($k)) { $Refs.map[$k] = [ordered]@{ path = $folder; references = (New-Object System.Collections.Generic.List[object]) } }
  $Refs.map[$k].references.Add([ordered]@{ kind = $Kind; name = $Name; via = $Via })
}

function Complete-RubiconFolderRefs {
  param($Refs)
  $sorted = [string[]]@($Refs.map.Keys)
  [System.Array]::Sort($sorted, [System.StringComparer]::Ordinal)
  $out = New-Object System.Collections.Generic.List[object]
  foreach ($k in $sorted) {
    $e = $Refs.map[$k]
    $out.Add([ordered]@{ path = $e.path; exists = [bool](Test-Path -LiteralPath $e.path -PathType Container); references = $e.references.ToArray() })
  }
  return , ($out.ToArray())
}

function Get-RubiconPathsInText {
  # Pure: absolute Windows paths in a command line or value: quoted ones
  # whole, unquoted ones up to the next space.
  param([string]$Text)
  $found = New-Object System.Collections.Generic.List[string]
  if ([string]::IsNullOrEmpty($Text)) { return , ($found.ToArray()) }
  foreach ($m in [regex]::Matches($Text, '"((?:[A-Za-z]:\\|\\\\)[^"]*)"|((?:[A-Za-z]:\\|\\\\[^\\\s"]+\\)[^\s"]*)')) {
    if ($m.Groups[1].Success) { $found.Add($m.Groups[1].Value) } else { $found.Add($m.Groups[2].Value) }
  }
  return , ($found.ToArray())
}

function Get-RubiconBinaryPath {
  # Pure: the executable of a service PathName: the quoted part, or up to
  # ".exe", or up to the first space.
  param([string]$PathName)
  if ([string]::IsNullOrWhiteSpace($PathName)) { return $null }
  $p = $PathName.Trim()
  if ($p.StartsWith('"')) { $end = $p.IndexOf('"', 1); if ($end -gt 0) { return $p.Substring(1, $end - 1) } }
  $m = [regex]::Match($p, '^(.*?\.exe)(\s|$)', 'IgnoreCase')
  if ($m.Success) { return $m.Groups[1].Value }
  return ($p -split '\s+')[0]
}

# ------------------------------------------------------------ sections

function Get-InventoryServices {
  # Win32_Service + Get-Service's ServicesDependedOn. Item: { name,
  # displayName, state, startMode, delayedAutoStart, pathName, binaryPath,
  # account, processId, dependsOn[], builtInAccount, needsPerson }
  # needsPerson: runs as a named account, whose password a reinstall needs.
  param($Refs)
  $deps = @{}
  foreach ($s in @(Get-Service)) {
    $deps[[string]$s.Name] = @(@(Get-RubiconProp $s 'ServicesDependedOn' @()) | Where-Object { $null -ne $_ } | ForEach-Object { [string]$_.Name })
  }
  $items = New-Object System.Collections.Generic.List[object]
  foreach ($c in @(Get-CimInstance -ClassName Win32_Service)) {
    $name = [string]$c.Name
    $pathName = ConvertTo-RubiconText (Get-RubiconProp $c 'PathName')
    $bin = Get-RubiconBinaryPath $pathName
    $account = ConvertTo-RubiconText (Get-RubiconProp $c 'StartName')
    $builtIn = $null -eq $account -or $account -match '^(LocalSystem|NT AUTHORITY\\(LocalService|NetworkService|Local Service|Network Service|SYSTEM)|NT SERVICE\\.+)$'
    $dependsOn = @()
    if ($deps.ContainsKey($name)) { $dependsOn = $deps[$name] }
    $items.Add([ordered]@{
        name = $name; displayName = ConvertTo-RubiconText (Get-RubiconProp $c 'DisplayName'); state = ConvertTo-RubiconText (Get-RubiconProp $c 'State')
        startMode = ConvertTo-RubiconText (Get-RubiconProp $c 'StartMode'); delayedAutoStart = [bool](Get-RubiconProp $c 'DelayedAutoStart' $false)
        pathName = $pathName; binaryPath = $bin; account = $account; processId = [long](Get-RubiconProp $c 'ProcessId' 0); dependsOn = @($dependsOn)
        builtInAccount = $builtIn; needsPerson = (-not $builtIn)
      })
    if ($bin) { Add-RubiconFolderRef $Refs $bin 'service' $name 'binary' }
    foreach ($p in (Get-RubiconPathsInText $pathName)) { if ($p -ne $bin) { Add-RubiconFolderRef $Refs $p 'service' $name 'argument' } }
  }
  return , ($items.ToArray())
}

function Get-InventoryScheduledTasks {
  # Get-ScheduledTask outside \Microsoft\, read from Export-ScheduledTask's
  # XML (Task Scheduler schema). Item: { path, name, state, author,
  # principal: {userId, logonType, runLevel}, actions: [{type, execute,
  # arguments, workingDirectory}], triggers: [{type, enabled,
  # startBoundary}], xml, needsPerson }  needsPerson: a stored password.
  param($Refs)
  Assert-RubiconCommand @('Get-ScheduledTask', 'Export-ScheduledTask')
  $items = New-Object System.Collections.Generic.List[object]
  foreach ($t in @(Get-ScheduledTask)) {
    $path = [string]$t.TaskPath
    if ($path -like '\Microsoft\*') { continue }
    $name = [string]$t.TaskName
    $xmlText = [string](Export-ScheduledTask -TaskName $name -TaskPath $path)
    [xml]$x = $xmlText
    $ns = New-Object System.Xml.XmlNamespaceManager $x.NameTable
    $ns.AddNamespace('t', 'http://schemas.microsoft.com/windows/2004/02/mit/task')
    $principal = $x.SelectSingleNode('/t:Task/t:Principals/t:Principal', $ns)
    $userId = $null; $logon = $null; $runLevel = $null
    if ($null -ne $principal) {
      $n = $principal.SelectSingleNode('t:UserId', $ns); if ($null -ne $n) { $userId = $n.InnerText }
      $n = $principal.SelectSingleNode('t:LogonType', $ns); if ($null -ne $n) { $logon = $n.InnerText }
      $n = $principal.SelectSingleNode('t:RunLevel', $ns); if ($null -ne $n) { $runLevel = $n.InnerText }
    }
    $actions = New-Object System.Collections.Generic.List[object]
    foreach ($a in @($x.SelectNodes('/t:Task/t:Actions/*', $ns))) {
      $exe = $null; $argsText = $null; $wd = $null
      $n = $a.SelectSingleNode('t:Command', $ns); if ($null -ne $n) { $exe = $n.InnerText }
      $n = $a.SelectSingleNode('t:Arguments', $ns); if ($null -ne $n) { $argsText = $n.InnerText }
      $n = $a.SelectSingleNode('t:WorkingDirectory', $ns); if ($null -ne $n) { $wd = $n.InnerText }
      $actions.Add([ordered]@{ type = $a.LocalName; execute = $exe; arguments = $argsText; workingDirectory = $wd })
      $full = $path + $name
      if ($exe) { Add-RubiconFolderRef $Refs $exe 'scheduledTask' $full 'execute' }
      if ($wd) { Add-RubiconFolderRef $Refs $wd 'scheduledTask' $full 'workingDirectory' }
      foreach ($p in (Get-RubiconPathsInText $argsText)) { Add-RubiconFolderRef $Refs $p 'scheduledTask' $full 'argument' }
    }
    $triggers = New-Object System.Collections.Generic.List[object]
    foreach ($tr in @($x.SelectNodes('/t:Task/t:Triggers/*', $ns))) {
      $enabled = $true; $start = $null
      $n = $tr.SelectSingleNode('t:Enabled', $ns); if ($null -ne $n) { $enabled = $n.InnerText -eq 'true' }
      $n = $tr.SelectSingleNode('t:StartBoundary', $ns); if ($null -ne $n) { $start = $n.InnerText }
      $triggers.Add([ordered]@{ type = $tr.LocalName; enabled = $enabled; startBoundary = $start })
    }
    $author = $null
    $n = $x.SelectSingleNode('/t:Task/t:RegistrationInfo/t:Author', $ns); if ($null -ne $n) { $author = $n.InnerText }
    $items.Add([ordered]@{
        path = $path; name = $name; state = ConvertTo-RubiconText (Get-RubiconProp $t 'State'); author = $author
        principal = [ordered]@{ userId = $userId; logonType = $logon; runLevel = $runLevel }
        actions = $actions.ToArray(); triggers = $triggers.ToArray(); xml = $xmlText
        needsPerson = ($logon -eq 'Password' -or $logon -eq 'InteractiveTokenOrPassword')
      })
  }
  return , ($items.ToArray())
}

function Get-InventoryShares {
  # Get-SmbShare (not the administrative ones: Special), Get-SmbShareAccess
  # and the folder's NTFS ACL (Get-Acl). Item: { name, path, description,
  # pathExists, access: [{accountName, accessControlType, accessRight}],
  # ntfs: [{identity, rights, type, inherited, isLocalAccount}],
  # ntfsError, needsPerson }  needsPerson: an NTFS entry for a local
  # account of this server, which does not exist on a rebuilt one.
  param($Refs)
  Assert-RubiconCommand @('Get-SmbShare', 'Get-SmbShareAccess')
  $computer = [System.Environment]::MachineName
  $items = New-Object System.Collections.Generic.List[object]
  foreach ($s in @(Get-SmbShare)) {
    if ([bool](Get-RubiconProp $s 'Special' $false)) { continue }
    $name = [string]$s.Name
    $path = ConvertTo-RubiconText (Get-RubiconProp $s 'Path')
    $access = @(Get-SmbShareAccess -Name $name | ForEach-Object { [ordered]@{ accountName = [string]$_.AccountName; accessControlType = [string]$_.AccessControlType; accessRight = [string]$_.AccessRight } })
    $exists = $false
    if ($path) { $exists = [bool](Test-Path -LiteralPath $path -PathType Container) }
    $ntfs = @()
    $ntfsError = $null
    if ($exists) {
      try {
        $acl = Get-Acl -LiteralPath $path
        $ntfs = @($acl.Access | ForEach-Object {
            $id = [string]$_.IdentityReference
            [ordered]@{ identity = $id; rights = [string]$_.FileSystemRights; type = [string]$_.AccessControlType; inherited = [bool]$_.IsInherited; isLocalAccount = $id.StartsWith($computer + '\', [System.StringComparison]::OrdinalIgnoreCase) }
          })
      } catch { $ntfsError = (Get-RubiconErrorInfo $_).message }
    }
    $local = @($ntfs | Where-Object { $_.isLocalAccount }).Count -gt 0
    $items.Add([ordered]@{ name = $name; path = $path; description = ConvertTo-RubiconText (Get-RubiconProp $s 'Description'); pathExists = $exists; access = $access; ntfs = $ntfs; ntfsError = $ntfsError; needsPerson = $local })
    if ($path) { Add-RubiconFolderRef $Refs $path 'share' $name 'path' }
  }
  return , ($items.ToArray())
}

function Get-InventoryIisSites {
  # IISAdministration Get-IISSite (Microsoft.Web.Administration.Site).
  # Item: { name, id, state, bindings: [{protocol, bindingInformation,
  # certificateHash, certificateStoreName}], applications: [{path,
  # applicationPool, virtualDirectories: [{path, physicalPath}]}] }
  param($Refs)
  Assert-RubiconCommand @('Get-IISSite')
  $items = New-Object System.Collections.Generic.List[object]
  foreach ($site in @(Get-IISSite)) {
    $name = [string]$site.Name
    $bindings = @(@(Get-RubiconProp $site 'Bindings' @()) | ForEach-Object {
        # not through Get-RubiconProp: returning a byte[] from a function would enumerate it
        $hashProp = $_.PSObject.Properties['CertificateHash']
        $hash = $null
        if ($null -ne $hashProp) { $hash = $hashProp.Value }
        $hex = $null
        if ($hash -is [byte[]] -and $hash.Length -gt 0) { $hex = ([System.BitConverter]::ToString($hash) -replace '-', '') }
        [ordered]@{ protocol = [string]$_.Protocol; bindingInformation = [string]$_.BindingInformation; certificateHash = $hex; certificateStoreName = ConvertTo-RubiconText (Get-RubiconProp $_ 'CertificateStoreName') }
      })
    $apps = New-Object System.Collections.Generic.List[object]
    foreach ($app in @(Get-RubiconProp $site 'Applications' @())) {
      $vdirs = @(@(Get-RubiconProp $app 'VirtualDirectories' @()) | ForEach-Object { [ordered]@{ path = [string]$_.Path; physicalPath = [string]$_.PhysicalPath } })
      foreach ($v in $vdirs) { Add-RubiconFolderRef $Refs $v.physicalPath 'iisSite' $name ('application ' + $app.Path + ' ' + $v.path) }
      $apps.Add([ordered]@{ path = [string]$app.Path; applicationPool = ConvertTo-RubiconText (Get-RubiconProp $app 'ApplicationPoolName'); virtualDirectories = $vdirs })
    }
    $items.Add([ordered]@{ name = $name; id = [long](Get-RubiconProp $site 'Id' 0); state = ConvertTo-RubiconText (Get-RubiconProp $site 'State'); bindings = $bindings; applications = $apps.ToArray() })
  }
  return , ($items.ToArray())
}

function Get-InventoryIisAppPools {
  # Get-IISAppPool (Microsoft.Web.Administration.ApplicationPool). Item:
  # { name, state, managedRuntimeVersion, managedPipelineMode,
  # identityType, userName, needsPerson }  needsPerson: SpecificUser, whose
  # password is not exported (and never read here).
  param($Refs)
  Assert-RubiconCommand @('Get-IISAppPool')
  $items = New-Object System.Collections.Generic.List[object]
  foreach ($p in @(Get-IISAppPool)) {
    $pm = Get-RubiconProp $p 'ProcessModel'
    $idType = ConvertTo-RubiconText (Get-RubiconProp $pm 'IdentityType')
    $items.Add([ordered]@{
        name = [string]$p.Name; state = ConvertTo-RubiconText (Get-RubiconProp $p 'State'); managedRuntimeVersion = ConvertTo-RubiconText (Get-RubiconProp $p 'ManagedRuntimeVersion')
        managedPipelineMode = ConvertTo-RubiconText (Get-RubiconProp $p 'ManagedPipelineMode'); identityType = $idType; userName = ConvertTo-RubiconText (Get-RubiconProp $pm 'UserName')
        needsPerson = ($idType -eq 'SpecificUser')
      })
  }
  return , ($items.ToArray())
}

function Get-InventoryOdbcDsns {
  # Get-OdbcDsn -Platform All (MSFT_OdbcDsn: Name, DsnType User|System,
  # Platform 32-bit|64-bit, DriverName, Attribute). Item: { name, dsnType,
  # platform, driverName, attributes: {key: value|null}, redacted: [keys] }
  param($Refs)
  Assert-RubiconCommand @('Get-OdbcDsn')
  $items = New-Object System.Collections.Generic.List[object]
  foreach ($d in @(Get-OdbcDsn -Platform All)) {
    $name = [string]$d.Name
    $attrs = [ordered]@{}
    $redacted = New-Object System.Collections.Generic.List[string]
    $raw = Get-RubiconProp $d 'Attribute'
    $pairs = New-Object System.Collections.Generic.List[object]
    if ($raw -is [System.Collections.IDictionary]) { foreach ($k in $raw.Keys) { $pairs.Add(@([string]$k, $raw[$k])) } }
    else { foreach ($kv in @(Get-RubiconProp $d 'KeyValuePair' @())) { $pairs.Add(@([string]$kv.Key, $kv.Value)) } }
    foreach ($pair in $pairs) {
      $k = $pair[0]
      if ($k -match $script:RubiconSecretName) { $attrs[$k] = $null; $redacted.Add($k); continue }
      $v = ConvertTo-RubiconText $pair[1]
      $attrs[$k] = $v
      foreach ($p in (Get-RubiconPathsInText $v)) { Add-RubiconFolderRef $Refs $p 'odbcDsn' $name $k }
    }
    $items.Add([ordered]@{ name = $name; dsnType = ConvertTo-RubiconText (Get-RubiconProp $d 'DsnType'); platform = ConvertTo-RubiconText (Get-RubiconProp $d 'Platform'); driverName = ConvertTo-RubiconText (Get-RubiconProp $d 'DriverName'); attributes = $attrs; redacted = $redacted.ToArray() })
  }
  return , ($items.ToArray())
}

function Get-RubiconCertificates {
  # The certificates of the LocalMachine\My store (X509Certificate2).
  param()
  return @(Get-ChildItem -Path 'Cert:\LocalMachine\My')
}

function Get-RubiconKeyExportable {
  # Whether the private key may be exported: a CNG key's ExportPolicy, a
  # CSP key's CspKeyContainerInfo.Exportable; null when it cannot be told.
  param([System.Security.Cryptography.X509Certificates.X509Certificate2]$Certificate)
  if (-not $Certificate.HasPrivateKey) { return $null }
  try {
    $key = [System.Security.Cryptography.X509Certificates.RSACertificateExtensions]::GetRSAPrivateKey($Certificate)
    if ($null -eq $key) { return $null }
    if ($key -is [System.Security.Cryptography.RSACng]) {
      $policy = [int]$key.Key.ExportPolicy
      return (($policy -band 1) -ne 0 -or ($policy -band 2) -ne 0)
    }
    if ($key -is [System.Security.Cryptography.RSACryptoServiceProvider]) { return [bool]$key.CspKeyContainerInfo.Exportable }
  } catch { return $null }
  return $null
}

function Get-InventoryCertificates {
  # Cert:\LocalMachine\My. Item: { subject, issuer, thumbprint, notBefore,
  # notAfter, hasPrivateKey, exportable (bool|null), friendlyName,
  # needsPerson }  needsPerson: a private key that cannot be exported.
  param($Refs)
  $items = New-Object System.Collections.Generic.List[object]
  foreach ($c in (Get-RubiconCertificates)) {
    if ($c -isnot [System.Security.Cryptography.X509Certificates.X509Certificate2]) { continue }
    $exp = Get-RubiconKeyExportable $c
    $items.Add([ordered]@{ subject = $c.Subject; issuer = $c.Issuer; thumbprint = $c.Thumbprint; notBefore = (ConvertTo-RubiconIsoTime $c.NotBefore); notAfter = (ConvertTo-RubiconIsoTime $c.NotAfter); hasPrivateKey = $c.HasPrivateKey; exportable = $exp; friendlyName = $c.FriendlyName; needsPerson = ($c.HasPrivateKey -and $false -eq $exp) })
  }
  return , ($items.ToArray())
}

function Get-InventoryPrograms {
  # Both Uninstall keys (64-bit and WOW6432Node), entries with a
  # DisplayName that are not SystemComponent. Item: { name, version,
  # publisher, installLocation, installDate, scope: 64-bit|32-bit }
  param($Refs)
  $items = New-Object System.Collections.Generic.List[object]
  foreach ($pair in @(@('HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\*', '64-bit'), @('HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall\*', '32-bit'))) {
    foreach ($e in @(Get-ItemProperty -Path $pair[0] -ErrorAction SilentlyContinue)) {
      $name = Get-RubiconProp $e 'DisplayName'
      if ([string]::IsNullOrWhiteSpace($name) -or [int](Get-RubiconProp $e 'SystemComponent' 0) -eq 1) { continue }
      $items.Add([ordered]@{ name = [string]$name; version = ConvertTo-RubiconText (Get-RubiconProp $e 'DisplayVersion'); publisher = ConvertTo-RubiconText (Get-RubiconProp $e 'Publisher'); installLocation = ConvertTo-RubiconText (Get-RubiconProp $e 'InstallLocation'); installDate = ConvertTo-RubiconText (Get-RubiconProp $e 'InstallDate'); scope = $pair[1] })
    }
  }
  return , ($items.ToArray())
}

function Get-InventoryVolumes {
  # Get-Volume (MSFT_Volume), volumes with a drive letter. Item: {
  # driveLetter, label, fileSystem, driveType, healthStatus, size,
  # sizeRemaining }
  param($Refs)
  Assert-RubiconCommand @('Get-Volume')
  $items = New-Object System.Collections.Generic.List[object]
  foreach ($v in @(Get-Volume)) {
    $letter = Get-RubiconProp $v 'DriveLetter'
    if ($null -eq $letter -or [string]$letter -eq '' -or [int][char]$letter -eq 0) { continue }
    $fs = Get-RubiconProp $v 'FileSystem'
    if ($null -eq $fs) { $fs = Get-RubiconProp $v 'FileSystemType' }
    $items.Add([ordered]@{ driveLetter = [string]$letter; label = ConvertTo-RubiconText (Get-RubiconProp $v 'FileSystemLabel'); fileSystem = ConvertTo-RubiconText $fs; driveType = ConvertTo-RubiconText (Get-RubiconProp $v 'DriveType'); healthStatus = ConvertTo-RubiconText (Get-RubiconProp $v 'HealthStatus'); size = [long](Get-RubiconProp $v 'Size' 0); sizeRemaining = [long](Get-RubiconProp $v 'SizeRemaining' 0) })
  }
  return , ($items.ToArray())
}

function Get-InventorySqlInstances {
  # The registry: HKLM\SOFTWARE\Microsoft\Microsoft SQL Server\Instance
  # Names\SQL maps instance names to ids; <id>\Setup has Edition, Version,
  # SQLDataRoot, SQLPath. Item: { name, id, edition, version, dataRoot,
  # programDir }
  param($Refs)
  $root = 'HKLM:\SOFTWARE\Microsoft\Microsoft SQL Server'
  $names = Get-ItemProperty -Path ($root + '\Instance Names\SQL') -ErrorAction SilentlyContinue
  $items = New-Object System.Collections.Generic.List[object]
  if ($null -eq $names) { return , ($items.ToArray()) }
  foreach ($p in @($names.PSObject.Properties | Where-Object { $_.Name -notlike 'PS*' })) {
    $id = [string]$p.Value
    $setup = Get-ItemProperty -Path ($root + '\' + $id + '\Setup') -ErrorAction SilentlyContinue
    $dataRoot = ConvertTo-RubiconText (Get-RubiconProp $setup 'SQLDataRoot')
    $items.Add([ordered]@{ name = $p.Name; id = $id; edition = ConvertTo-RubiconText (Get-RubiconProp $setup 'Edition'); version = ConvertTo-RubiconText (Get-RubiconProp $setup 'Version'); dataRoot = $dataRoot; programDir = ConvertTo-RubiconText (Get-RubiconProp $setup 'SQLPath') })
    if ($dataRoot) { Add-RubiconFolderRef $Refs $dataRoot 'sqlInstance' $p.Name 'SQLDataRoot' }
  }
  return , ($items.ToArray())
}

function Get-InventoryLocalUsers {
  # Get-LocalUser. Item: { name, enabled, sid, description, lastLogon,
  # principalSource }
  param($Refs)
  Assert-RubiconCommand @('Get-LocalUser')
  return , (@(Get-LocalUser | ForEach-Object { [ordered]@{ name = [string]$_.Name; enabled = [bool]$_.Enabled; sid = ConvertTo-RubiconText (Get-RubiconProp $_ 'SID'); description = ConvertTo-RubiconText (Get-RubiconProp $_ 'Description'); lastLogon = ConvertTo-RubiconTime (Get-RubiconProp $_ 'LastLogon'); principalSource = ConvertTo-RubiconText (Get-RubiconProp $_ 'PrincipalSource') } }))
}

function Get-RubiconGroupMembersAdsi {
  # Get-LocalGroupMember fails on a group with an orphaned SID member; the
  # WinNT provider still lists the members' names.
  param([string]$Group)
  $g = [ADSI]('WinNT://./' + $Group + ',group')
  return @($g.psbase.Invoke('Members') | ForEach-Object { [string]$_.GetType().InvokeMember('Name', 'GetProperty', $null, $_, $null) })
}

function Get-InventoryLocalGroups {
  # Get-LocalGroup + Get-LocalGroupMember (ADSI when that fails). Item: {
  # name, sid, description, members: [{name, sid, objectClass,
  # principalSource}], membersVia: Get-LocalGroupMember|ADSI|null,
  # membersError }
  param($Refs)
  Assert-RubiconCommand @('Get-LocalGroup', 'Get-LocalGroupMember')
  $items = New-Object System.Collections.Generic.List[object]
  foreach ($g in @(Get-LocalGroup)) {
    $name = [string]$g.Name
    $members = @()
    $via = 'Get-LocalGroupMember'
    $err = $null
    try {
      $members = @(Get-LocalGroupMember -Group $name | ForEach-Object { [ordered]@{ name = [string]$_.Name; sid = ConvertTo-RubiconText (Get-RubiconProp $_ 'SID'); objectClass = ConvertTo-RubiconText (Get-RubiconProp $_ 'ObjectClass'); principalSource = ConvertTo-RubiconText (Get-RubiconProp $_ 'PrincipalSource') } })
    } catch {
      $err = (Get-RubiconErrorInfo $_).message
      try {
        $members = @(Get-RubiconGroupMembersAdsi $name | ForEach-Object { [ordered]@{ name = $_; sid = $null; objectClass = $null; principalSource = $null } })
        $via = 'ADSI'
      } catch { $via = $null }
    }
    $items.Add([ordered]@{ name = $name; sid = ConvertTo-RubiconText (Get-RubiconProp $g 'SID'); description = ConvertTo-RubiconText (Get-RubiconProp $g 'Description'); members = $members; membersVia = $via; membersError = $err })
  }
  return , ($items.ToArray())
}

function Get-InventoryFirewallRules {
  # Enabled Get-NetFirewallRule rules (MSFT_NetFirewallRule); for rules
  # outside the built-in groups also the port and program filters. Item: {
  # name, displayName, group, direction, action, profile, custom,
  # protocol, localPort[], remotePort[], program }
  param($Refs)
  Assert-RubiconCommand @('Get-NetFirewallRule')
  $items = New-Object System.Collections.Generic.List[object]
  foreach ($r in @(Get-NetFirewallRule -Enabled True)) {
    $group = ConvertTo-RubiconText (Get-RubiconProp $r 'DisplayGroup')
    $custom = [string]::IsNullOrEmpty($group)
    $protocol = $null; $local = @(); $remote = @(); $program = $null
    if ($custom) {
      $pf = @(Get-NetFirewallPortFilter -AssociatedNetFirewallRule $r)
      if ($pf.Count -gt 0) { $protocol = ConvertTo-RubiconText (Get-RubiconProp $pf[0] 'Protocol'); $local = @(@(Get-RubiconProp $pf[0] 'LocalPort' @()) | ForEach-Object { [string]$_ }); $remote = @(@(Get-RubiconProp $pf[0] 'RemotePort' @()) | ForEach-Object { [string]$_ }) }
      $af = @(Get-NetFirewallApplicationFilter -AssociatedNetFirewallRule $r)
      if ($af.Count -gt 0) { $program = ConvertTo-RubiconText (Get-RubiconProp $af[0] 'Program') }
    }
    $items.Add([ordered]@{ name = [string]$r.Name; displayName = ConvertTo-RubiconText (Get-RubiconProp $r 'DisplayName'); group = $group; direction = ConvertTo-RubiconText (Get-RubiconProp $r 'Direction'); action = ConvertTo-RubiconText (Get-RubiconProp $r 'Action'); profile = ConvertTo-RubiconText (Get-RubiconProp $r 'Profile'); custom = $custom; protocol = $protocol; localPort = $local; remotePort = $remote; program = $program })
  }
  return , ($items.ToArray())
}

function Get-RubiconHostsPath {
  return (Join-Path ([System.Environment]::GetEnvironmentVariable('SystemRoot')) 'System32\drivers\etc\hosts')
}

function Read-RubiconHostsFile {
  # Pure over the file: each non-comment line's address and names.
  param([string]$Path)
  $items = New-Object System.Collections.Generic.List[object]
  if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) { return , ($items.ToArray()) }
  foreach ($line in ((Read-RubiconTextFile $Path) -split "`r?`n")) {
    $l = $line
    $hash = $l.IndexOf('#')
    if ($hash -ge 0) { $l = $l.Substring(0, $hash) }
    $parts = @($l.Trim() -split '\s+' | Where-Object { $_ -ne '' })
    if ($parts.Count -lt 2) { continue }
    $items.Add([ordered]@{ address = $parts[0]; names = @($parts[1..($parts.Count - 1)]) })
  }
  return , ($items.ToArray())
}

function Get-InventoryHostsFile {
  # %SystemRoot%\System32\drivers\etc\hosts. Item: { address, names[] }
  param($Refs)
  return , (Read-RubiconHostsFile (Get-RubiconHostsPath))
}

function Get-RubiconMachineEnvironment {
  return [System.Environment]::GetEnvironmentVariables([System.EnvironmentVariableTarget]::Machine)
}

function Get-InventoryEnvironment {
  # Machine environment variables, sorted by name. Item: { name, value,
  # redacted }  a name that looks like a secret keeps its value out.
  param($Refs)
  $vars = Get-RubiconMachineEnvironment
  $names = [string[]]@($vars.Keys | ForEach-Object { [string]$_ })
  [System.Array]::Sort($names, [System.StringComparer]::OrdinalIgnoreCase)
  $items = New-Object System.Collections.Generic.List[object]
  foreach ($n in $names) {
    if ($n -match $script:RubiconSecretName) { $items.Add([ordered]@{ name = $n; value = $null; redacted = $true }); continue }
    $v = [string]$vars[$n]
    $items.Add([ordered]@{ name = $n; value = $v; redacted = $false })
  }
  return , ($items.ToArray())
}
