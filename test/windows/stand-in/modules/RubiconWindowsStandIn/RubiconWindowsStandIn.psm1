# Stand-in for the Windows-only service commands Rubicon's freeze, thaw and
# inventory scripts call, so the REAL scripts run under PowerShell 7 on
# Linux in the end-to-end test. The services live in a JSON file
# ($env:RUBICON_STANDIN_SERVICES): [{ Name, DisplayName, State, StartMode,
# PathName, StartName, DependentServices: [names] }].
#
# Shapes (the properties the scripts read), from Microsoft's pages:
# - Get-CimInstance Win32_Service: Name, DisplayName, State (Running,
#   Stopped, ...), StartMode (Auto, Manual, Disabled), DelayedAutoStart,
#   PathName, StartName, ProcessId
#   (learn.microsoft.com/windows/win32/cimwin32prov/win32-service);
# - Get-Service: ServiceController Name, Status, DependentServices,
#   ServicesDependedOn
#   (learn.microsoft.com/dotnet/api/system.serviceprocess.servicecontroller);
# - Invoke-CimMethod ... StartService: ReturnValue 0 accepted, 10 already
#   running (learn.microsoft.com/windows/win32/cimwin32prov/startservice-method-in-class-win32-service);
# - Set-Service -StartupType Automatic|Manual|Disabled; Stop-Service -NoWait.
# - Win32_ShadowCopy (the capture script's VSS shadow), kept in
#   shadows.json beside the services file: Invoke-CimMethod -ClassName
#   Win32_ShadowCopy -MethodName Create -Arguments @{Volume; Context}
#   returns ReturnValue (0 success, 3 volume not found, 5 unsupported
#   context) and ShadowID, a GUID in braces
#   (learn.microsoft.com/previous-versions/windows/desktop/vsswmi/create-method-in-class-win32-shadowcopy);
#   Get-CimInstance Win32_ShadowCopy -Filter "ID='{...}'" gives ID,
#   DeviceObject (\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopyN),
#   VolumeName, InstallDate, ClientAccessible
#   (learn.microsoft.com/previous-versions/windows/desktop/legacy/aa394428(v=vs.85),
#   Win32_ShadowCopy class); Remove-CimInstance -InputObject deletes it.
#   Linux has no shadow copies: the stand-in's shadow is a record only, and
#   its DeviceObject stands for the LIVE volume (bin/cmd.exe links it to /),
#   so nothing read through it is point-in-time. restic, which the capture
#   script runs with its own VSS snapshot, reads the live folder here
#   (bin/restic drops --use-fs-snapshot).
# - SMB mappings (the capture and landing scripts' share credentials):
#   New-SmbMapping -RemotePath \\server\share -UserName -Password
#   -Persistent $false, Get-SmbMapping -RemotePath, Remove-SmbMapping
#   -RemotePath -Force -UpdateProfile (SmbShare module, MSFT_SmbMapping:
#   Status, LocalPath, RemotePath, UserName;
#   learn.microsoft.com/powershell/module/smbshare/new-smbmapping). A
#   Windows logon session keeps the mapping's credentials; here they are an
#   smbclient authentication file $env:RUBICON_STANDIN_SMB/<server>/<share>.auth
#   (0600) that bin/robocopy reads, deleted by Remove-SmbMapping. The
#   credentials are checked by the real smbd when robocopy connects, not
#   here (Windows checks them at New-SmbMapping).
# Any other class, or a call this stand-in does not know, throws: the
# scripts then report that section or step as failed, as Windows would for a
# missing feature.

Set-StrictMode -Version Latest

function Read-StandInServices {
  $path = $env:RUBICON_STANDIN_SERVICES
  if (-not $path -or -not (Test-Path -LiteralPath $path)) { return @() }
  return @(Get-Content -Raw -LiteralPath $path | ConvertFrom-Json)
}

function Write-StandInServices {
  param($Services)
  $path = $env:RUBICON_STANDIN_SERVICES
  $tmp = $path + '.tmp'
  Set-Content -LiteralPath $tmp -Value (ConvertTo-Json -InputObject @($Services) -Depth 5) -Encoding utf8
  Move-Item -LiteralPath $tmp -Destination $path -Force
}

function Find-StandInService {
  param([string]$Name)
  $s = @(Read-StandInServices | Where-Object { $_.Name -eq $Name })
  if ($s.Count -eq 0) {
    $e = New-Object System.InvalidOperationException ("Cannot find any service with service name '" + $Name + "'.")
    throw $e
  }
  return $s[0]
}

function ConvertTo-StandInCim {
  param($S)
  return [pscustomobject]@{ Name = $S.Name; DisplayName = $S.DisplayName; State = $S.State; StartMode = $S.StartMode; DelayedAutoStart = $false; PathName = $S.PathName; StartName = $S.StartName; ProcessId = 0 }
}

function ConvertTo-StandInController {
  param($S, $All)
  $dependents = @($All | Where-Object { @($S.DependentServices) -contains $_.Name } | ForEach-Object { [pscustomobject]@{ Name = $_.Name } })
  $dependedOn = @($All | Where-Object { @($_.DependentServices) -contains $S.Name } | ForEach-Object { [pscustomobject]@{ Name = $_.Name } })
  return [pscustomobject]@{ Name = $S.Name; Status = $S.State; DependentServices = $dependents; ServicesDependedOn = $dependedOn }
}

function Get-StandInShadowsPath {
  return (Join-Path (Split-Path -Parent $env:RUBICON_STANDIN_SERVICES) 'shadows.json')
}

function Read-StandInShadows {
  $path = Get-StandInShadowsPath
  if (-not (Test-Path -LiteralPath $path)) { return @() }
  return @(Get-Content -Raw -LiteralPath $path | ConvertFrom-Json)
}

function Write-StandInShadows {
  param($Shadows)
  $path = Get-StandInShadowsPath
  Set-Content -LiteralPath ($path + '.tmp') -Value (ConvertTo-Json -InputObject @($Shadows) -Depth 5) -Encoding utf8
  Move-Item -LiteralPath ($path + '.tmp') -Destination $path -Force
}

function Get-CimInstance {
  param([string]$ClassName, [string]$Filter)
  if ($ClassName -eq 'Win32_ShadowCopy') {
    $all = @(Read-StandInShadows)
    if ($Filter) {
      if ($Filter -notmatch "^ID='([^']*)'$") { throw (New-Object System.NotSupportedException ('the stand-in cannot filter shadow copies by ' + $Filter)) }
      $id = $Matches[1]
      $all = @($all | Where-Object { $_.ID -eq $id })
    }
    foreach ($x in $all) { [pscustomobject]@{ ID = $x.ID; DeviceObject = $x.DeviceObject; VolumeName = $x.VolumeName; InstallDate = $x.InstallDate; ClientAccessible = $true; CimClass = 'Win32_ShadowCopy' } }
    return
  }
  if ($ClassName -ne 'Win32_Service') { throw (New-Object System.NotSupportedException ('the stand-in has no CIM class ' + $ClassName)) }
  $all = @(Read-StandInServices)
  if ($Filter) {
    if ($Filter -notmatch "^Name='([^']*)'$") { throw (New-Object System.NotSupportedException ('the stand-in cannot filter by ' + $Filter)) }
    $n = $Matches[1]
    $all = @($all | Where-Object { $_.Name -eq $n })
  }
  foreach ($s in $all) { ConvertTo-StandInCim $s }
}

function Invoke-CimMethod {
  param($InputObject, [string]$MethodName, [string]$ClassName, $Arguments)
  if ($ClassName -eq 'Win32_ShadowCopy' -and $MethodName -eq 'Create') {
    if ($Arguments.Context -ne 'ClientAccessible') { return [pscustomobject]@{ ReturnValue = 5; ShadowID = $null } }
    if (-not (Test-Path -LiteralPath $Arguments.Volume -PathType Container)) { return [pscustomobject]@{ ReturnValue = 3; ShadowID = $null } }
    $all = @(Read-StandInShadows)
    $n = 1
    foreach ($x in $all) { if ($x.N -ge $n) { $n = $x.N + 1 } }
    $id = '{' + [guid]::NewGuid().ToString().ToUpperInvariant() + '}'
    $all += [pscustomobject]@{ N = $n; ID = $id; DeviceObject = ('\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopy' + $n); VolumeName = $Arguments.Volume; InstallDate = [DateTime]::UtcNow.ToString('o') }
    Write-StandInShadows $all
    return [pscustomobject]@{ ReturnValue = 0; ShadowID = $id }
  }
  if ($null -eq $InputObject -or $MethodName -ne 'StartService') { throw (New-Object System.NotSupportedException ('the stand-in cannot invoke ' + $MethodName)) }
  $all = @(Read-StandInServices)
  $s = @($all | Where-Object { $_.Name -eq $InputObject.Name })[0]
  if ($s.StartMode -eq 'Disabled') { return [pscustomobject]@{ ReturnValue = 14 } }
  if ($s.State -eq 'Running') { return [pscustomobject]@{ ReturnValue = 10 } }
  $s.State = 'Running'
  Write-StandInServices $all
  return [pscustomobject]@{ ReturnValue = 0 }
}

function Get-Service {
  param([string]$Name)
  $all = @(Read-StandInServices)
  if ($Name) { $null = Find-StandInService $Name; $all | Where-Object { $_.Name -eq $Name } | ForEach-Object { ConvertTo-StandInController $_ $all } }
  else { foreach ($s in $all) { ConvertTo-StandInController $s $all } }
}

function Stop-Service {
  param([string]$Name, [switch]$NoWait)
  $null = Find-StandInService $Name
  $all = @(Read-StandInServices)
  foreach ($s in $all) { if ($s.Name -eq $Name) { $s.State = 'Stopped' } }
  Write-StandInServices $all
}

function Set-Service {
  param([string]$Name, [string]$StartupType)
  $null = Find-StandInService $Name
  $mode = @{ Automatic = 'Auto'; Manual = 'Manual'; Disabled = 'Disabled' }[$StartupType]
  if (-not $mode) { throw (New-Object System.NotSupportedException ('the stand-in cannot set StartupType ' + $StartupType)) }
  $all = @(Read-StandInServices)
  foreach ($s in $all) { if ($s.Name -eq $Name) { $s.StartMode = $mode } }
  Write-StandInServices $all
}

function Remove-CimInstance {
  param($InputObject)
  if ($null -eq $InputObject -or -not ($InputObject.PSObject.Properties.Name -contains 'CimClass') -or $InputObject.CimClass -ne 'Win32_ShadowCopy') { throw (New-Object System.NotSupportedException 'the stand-in removes Win32_ShadowCopy instances only') }
  Write-StandInShadows @(Read-StandInShadows | Where-Object { $_.ID -ne $InputObject.ID })
}

function Get-StandInSmbAuthPath {
  param([string]$RemotePath)
  $m = [regex]::Match($RemotePath, '^\\\\([^\\]+)\\([^\\]+)$')
  if (-not $m.Success) { throw (New-Object System.ArgumentException ('the stand-in maps \\server\share only, not ' + $RemotePath)) }
  if (-not $env:RUBICON_STANDIN_SMB) { throw (New-Object System.InvalidOperationException 'RUBICON_STANDIN_SMB is not set') }
  return [System.IO.Path]::Combine($env:RUBICON_STANDIN_SMB, $m.Groups[1].Value, $m.Groups[2].Value + '.auth')
}

function New-SmbMapping {
  param([string]$RemotePath, [string]$UserName, [string]$Password, [bool]$Persistent)
  $path = Get-StandInSmbAuthPath $RemotePath
  $dir = [System.IO.Path]::GetDirectoryName($path)
  if (-not [System.IO.Directory]::Exists($dir)) { $null = [System.IO.Directory]::CreateDirectory($dir) }
  $tmp = $path + '.tmp'
  [System.IO.File]::WriteAllText($tmp, '')
  [System.IO.File]::SetUnixFileMode($tmp, [System.IO.UnixFileMode]'UserRead, UserWrite')
  [System.IO.File]::WriteAllText($tmp, ('username = ' + $UserName + "`npassword = " + $Password + "`n"))
  [System.IO.File]::Move($tmp, $path, $true)
  [pscustomobject]@{ Status = 'OK'; LocalPath = ''; RemotePath = $RemotePath; UserName = $UserName }
}

function Get-SmbMapping {
  param([string]$RemotePath)
  $path = Get-StandInSmbAuthPath $RemotePath
  if ([System.IO.File]::Exists($path)) { [pscustomobject]@{ Status = 'OK'; LocalPath = ''; RemotePath = $RemotePath } }
}

function Remove-SmbMapping {
  param([string]$RemotePath, [switch]$Force, [switch]$UpdateProfile)
  $path = Get-StandInSmbAuthPath $RemotePath
  if (-not [System.IO.File]::Exists($path)) { throw (New-Object System.InvalidOperationException ("No MSFT_SmbMapping objects found with property 'RemotePath' equal to '" + $RemotePath + "'.")) }
  [System.IO.File]::Delete($path)
}
