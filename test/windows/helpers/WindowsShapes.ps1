# Builders of outputs shaped like Windows' own, for Pester mocks. Each
# names the Microsoft page its shape comes from. CIM objects cannot be
# built here (Microsoft.Management.Infrastructure needs libmi, which Linux
# pwsh lacks), so they are PSCustomObjects with the documented property
# names, the value forms the cmdlets print, and the CIM type name in
# PSTypeNames.

function New-TestCim {
  param([string]$Class, [System.Collections.IDictionary]$Properties, [string]$Namespace = 'root/cimv2')
  $o = [pscustomobject]$Properties
  $o.PSObject.TypeNames.Insert(0, 'Microsoft.Management.Infrastructure.CimInstance#' + $Namespace + '/' + $Class)
  return $o
}

# Win32_Service: https://learn.microsoft.com/en-us/windows/win32/cimwin32prov/win32-service
# State: Stopped, Start Pending, Stop Pending, Running, Continue Pending,
# Pause Pending, Paused, Unknown. StartMode: Boot, System, Auto, Manual, Disabled.
function New-FakeWin32Service {
  param([string]$Name, [string]$State = 'Running', [string]$StartMode = 'Auto', [string]$PathName = $null, [string]$StartName = 'LocalSystem', [bool]$DelayedAutoStart = $false, [uint32]$ProcessId = 0, [string]$DisplayName = $null)
  if (-not $DisplayName) { $DisplayName = $Name }
  if (-not $PathName) { $PathName = '"C:\Program Files\Vendor\' + $Name + '.exe"' }
  New-TestCim 'Win32_Service' ([ordered]@{
      AcceptPause = $false; AcceptStop = ($State -eq 'Running'); Caption = $DisplayName; CheckPoint = [uint32]0; DelayedAutoStart = $DelayedAutoStart
      Description = $null; DesktopInteract = $false; DisplayName = $DisplayName; ErrorControl = 'Normal'; ExitCode = [uint32]0; Name = $Name
      PathName = $PathName; ProcessId = $ProcessId; ServiceSpecificExitCode = [uint32]0; ServiceType = 'Own Process'; Started = ($State -eq 'Running')
      StartMode = $StartMode; StartName = $StartName; State = $State; Status = 'OK'; SystemName = 'SRV-EHR01'; TagId = [uint32]0; WaitHint = [uint32]0
    })
}

# System.ServiceProcess.ServiceController (what Get-Service returns):
# https://learn.microsoft.com/en-us/dotnet/api/system.serviceprocess.servicecontroller
# Status is a ServiceControllerStatus (Stopped, StartPending, StopPending,
# Running, ContinuePending, PausePending, Paused); StartType a
# ServiceStartMode (Boot, System, Automatic, Manual, Disabled).
function New-FakeServiceController {
  param([string]$Name, [string]$Status = 'Running', [object[]]$DependentServices = @(), [object[]]$ServicesDependedOn = @(), [string]$StartType = 'Automatic')
  $o = [pscustomobject][ordered]@{ Name = $Name; ServiceName = $Name; DisplayName = $Name; Status = $Status; StartType = $StartType; CanStop = ($Status -eq 'Running'); DependentServices = $DependentServices; ServicesDependedOn = $ServicesDependedOn; MachineName = '.' }
  $o.PSObject.TypeNames.Insert(0, 'System.ServiceProcess.ServiceController')
  return $o
}

# Win32_ShadowCopy.Create returns {ReturnValue, ShadowID}; codes 0-13:
# https://learn.microsoft.com/en-us/previous-versions/windows/desktop/vsswmi/create-method-in-class-win32-shadowcopy
function New-FakeShadowCreateResult {
  param([uint32]$ReturnValue = 0, [string]$ShadowID = '{6C7A8D2E-1B3F-4C5D-9E0A-2F4B6D8E0A1C}')
  $o = [pscustomobject][ordered]@{ ReturnValue = $ReturnValue; ShadowID = $ShadowID; PSComputerName = $null }
  $o.PSObject.TypeNames.Insert(0, 'Microsoft.Management.Infrastructure.CimMethodResult#Win32_ShadowCopy#Create')
  return $o
}

# Win32_ShadowCopy instance (ID, DeviceObject, VolumeName, InstallDate, ...):
# https://learn.microsoft.com/en-us/previous-versions/windows/desktop/vsswmi/win32-shadowcopy
function New-FakeWin32ShadowCopy {
  param([string]$ID = '{6C7A8D2E-1B3F-4C5D-9E0A-2F4B6D8E0A1C}', [int]$Number = 12)
  New-TestCim 'Win32_ShadowCopy' ([ordered]@{
      ClientAccessible = $true; Count = [uint32]1; DeviceObject = ('\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopy' + $Number); Differential = $true; ExposedLocally = $false
      ExposedName = $null; ExposedPath = $null; ExposedRemotely = $false; HardwareAssisted = $false; ID = $ID; Imported = $false; InstallDate = [datetime]'2026-11-30T22:00:00'
      NoAutoRelease = $true; NotSurfaced = $false; NoWriters = $true; OriginatingMachine = 'SRV-EHR01'; Persistent = $true; Plex = $false
      ProviderID = '{b5946137-7b9f-4925-af80-51abd60b20d5}'; ServiceMachine = 'SRV-EHR01'; SetID = '{0d1a9f4e-0000-4000-8000-000000000001}'; State = [uint32]12; Transportable = $false
      VolumeName = '\\?\Volume{3f1c8a7e-0000-4000-8000-000000000002}\'
    })
}

# Win32_Service StartService/StopService return values:
# https://learn.microsoft.com/en-us/windows/win32/cimwin32prov/stopservice-method-in-class-win32-service
function New-FakeServiceMethodResult { param([uint32]$ReturnValue = 0) [pscustomobject]@{ ReturnValue = $ReturnValue; PSComputerName = $null } }

# MSFT_SmbShare: https://learn.microsoft.com/en-us/previous-versions/windows/desktop/smb/msft-smbshare
function New-FakeSmbShare {
  param([string]$Name, [string]$Path, [string]$Description = '', [bool]$Special = $false)
  New-TestCim 'MSFT_SmbShare' ([ordered]@{ Name = $Name; ScopeName = '*'; Path = $Path; Description = $Description; Special = $Special; ShareType = 'FileSystemDirectory'; ShareState = 'Online'; CurrentUsers = [uint32]0; EncryptData = $false; FolderEnumerationMode = 'Unrestricted'; CachingMode = 'Manual' }) 'root/Microsoft/Windows/SMB'
}

# MSFT_SmbShareAccessControlEntry (AccessControlType Allow|Deny, AccessRight
# Full|Change|Read|Custom), as Get-SmbShareAccess prints it:
# https://learn.microsoft.com/en-us/previous-versions/windows/desktop/smb/msft-smbshareaccesscontrolentry
# https://learn.microsoft.com/en-us/powershell/module/smbshare/get-smbshareaccess
function New-FakeSmbShareAccess {
  param([string]$Name, [string]$AccountName, [string]$AccessRight = 'Full', [string]$AccessControlType = 'Allow')
  New-TestCim 'MSFT_SmbShareAccessControlEntry' ([ordered]@{ Name = $Name; ScopeName = '*'; AccountName = $AccountName; AccessControlType = $AccessControlType; AccessRight = $AccessRight }) 'root/Microsoft/Windows/SMB'
}

# FileSystemAccessRule (the Access of Get-Acl on a folder):
# https://learn.microsoft.com/en-us/dotnet/api/system.security.accesscontrol.filesystemaccessrule
# (NTAccount cannot be built on Linux: "Windows Principal functionality is
# not supported on this platform", so the identity is its string form.)
function New-FakeFileSystemAccessRule {
  param([string]$Identity, [string]$Rights = 'Modify, Synchronize', [string]$Type = 'Allow', [bool]$Inherited = $false)
  [pscustomobject][ordered]@{ FileSystemRights = $Rights; AccessControlType = $Type; IdentityReference = $Identity; IsInherited = $Inherited; InheritanceFlags = 'ContainerInherit, ObjectInherit'; PropagationFlags = 'None' }
}

# A scheduled task as Get-ScheduledTask returns it (MSFT_ScheduledTask:
# TaskName, TaskPath, State Ready|Running|Disabled|Queued|Unknown) and its
# Export-ScheduledTask XML (Task Scheduler schema; LogonType S4U,
# Password, InteractiveToken, InteractiveTokenOrPassword):
# https://learn.microsoft.com/en-us/powershell/module/scheduledtasks/get-scheduledtask
# https://learn.microsoft.com/en-us/windows/win32/taskschd/taskschedulerschema-logontype-simpletype
function New-FakeScheduledTask {
  param([string]$TaskName, [string]$TaskPath = '\', [string]$State = 'Ready')
  New-TestCim 'MSFT_ScheduledTask' ([ordered]@{ TaskName = $TaskName; TaskPath = $TaskPath; State = $State; Author = 'SRV-EHR01\vendor'; Description = $null; URI = ($TaskPath + $TaskName) }) 'Root/Microsoft/Windows/TaskScheduler'
}

function New-FakeTaskXml {
  param([string]$Command, [string]$Arguments = '', [string]$WorkingDirectory = '', [string]$UserId = 'S-1-5-18', [string]$LogonType = 'ServiceAccount', [string]$Author = 'SRV-EHR01\vendor')
  $logon = ''
  if ($LogonType -ne 'ServiceAccount') { $logon = '<LogonType>' + $LogonType + '</LogonType>' }
  $wd = ''
  if ($WorkingDirectory) { $wd = '<WorkingDirectory>' + $WorkingDirectory + '</WorkingDirectory>' }
  $a = ''
  if ($Arguments) { $a = '<Arguments>' + [System.Security.SecurityElement]::Escape($Arguments) + '</Arguments>' }
  return @"
<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo><Author>$Author</Author><URI>\Vendor\Nightly export</URI></RegistrationInfo>
  <Triggers><CalendarTrigger><StartBoundary>2024-01-01T02:00:00</StartBoundary><Enabled>true</Enabled><ScheduleByDay><DaysInterval>1</DaysInterval></ScheduleByDay></CalendarTrigger></Triggers>
  <Principals><Principal id="Author"><UserId>$UserId</UserId>$logon<RunLevel>HighestAvailable</RunLevel></Principal></Principals>
  <Settings><MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy><Enabled>true</Enabled></Settings>
  <Actions Context="Author"><Exec><Command>$Command</Command>$a$wd</Exec></Actions>
</Task>
"@
}

# Microsoft.Web.Administration.Site / Binding / Application /
# VirtualDirectory (what IISAdministration's Get-IISSite returns):
# https://learn.microsoft.com/en-us/powershell/module/iisadministration/get-iissite
# https://learn.microsoft.com/en-us/dotnet/api/microsoft.web.administration.site
function New-FakeIisSite {
  param([string]$Name, [long]$Id = 1, [string]$PhysicalPath = '%SystemDrive%\inetpub\wwwroot', [object[]]$Bindings = $null, [string]$State = 'Started')
  if ($null -eq $Bindings) { $Bindings = @([pscustomobject]@{ Protocol = 'http'; BindingInformation = '*:80:'; CertificateHash = $null; CertificateStoreName = $null }) }
  $vdir = [pscustomobject]@{ Path = '/'; PhysicalPath = $PhysicalPath }
  $app = [pscustomobject]@{ Path = '/'; ApplicationPoolName = 'DefaultAppPool'; VirtualDirectories = @($vdir) }
  [pscustomobject][ordered]@{ Name = $Name; Id = $Id; State = $State; Bindings = $Bindings; Applications = @($app) }
}

# Microsoft.Web.Administration.ApplicationPool (ProcessModel.IdentityType:
# LocalSystem, LocalService, NetworkService, SpecificUser, ApplicationPoolIdentity):
# https://learn.microsoft.com/en-us/dotnet/api/microsoft.web.administration.applicationpool
function New-FakeIisAppPool {
  param([string]$Name, [string]$IdentityType = 'ApplicationPoolIdentity', [string]$UserName = '')
  [pscustomobject][ordered]@{ Name = $Name; State = 'Started'; ManagedRuntimeVersion = 'v4.0'; ManagedPipelineMode = 'Integrated'; ProcessModel = [pscustomobject]@{ IdentityType = $IdentityType; UserName = $UserName; Password = 'must-never-be-read' } }
}

# Get-OdbcDsn output (MSFT_OdbcDsn: Name, DsnType User|System, Platform
# 32-bit|64-bit, DriverName, Attribute):
# https://learn.microsoft.com/en-us/powershell/module/wdac/get-odbcdsn
# https://learn.microsoft.com/en-us/previous-versions/windows/desktop/wdacwmiprov/msft-odbcdsn
function New-FakeOdbcDsn {
  param([string]$Name, [string]$DriverName = 'ODBC Driver 17 for SQL Server', [string]$Platform = '64-bit', [string]$DsnType = 'System', [System.Collections.IDictionary]$Attribute = @{})
  New-TestCim 'MSFT_OdbcDsn' ([ordered]@{ Name = $Name; DsnType = $DsnType; Platform = $Platform; DriverName = $DriverName; Attribute = $Attribute }) 'Root/Microsoft/Windows/Wdac'
}

# MSFT_Volume (DriveLetter Char16, FileSystem, FileSystemLabel,
# DriveType Fixed|Removable|..., HealthStatus Healthy|Warning|Unhealthy,
# Size, SizeRemaining): https://learn.microsoft.com/en-us/windows-hardware/drivers/storage/msft-volume
function New-FakeMsftVolume {
  param([char]$DriveLetter, [string]$Label = '', [long]$Size = 107374182400, [long]$SizeRemaining = 53687091200, [string]$FileSystem = 'NTFS')
  New-TestCim 'MSFT_Volume' ([ordered]@{ DriveLetter = $DriveLetter; Path = '\\?\Volume{00000000-0000-4000-8000-00000000000' + [int]$DriveLetter % 10 + '}\'; HealthStatus = 'Healthy'; FileSystem = $FileSystem; FileSystemLabel = $Label; FileSystemType = $FileSystem; Size = [uint64]$Size; SizeRemaining = [uint64]$SizeRemaining; DriveType = 'Fixed' }) 'ROOT/Microsoft/Windows/Storage'
}

# Get-LocalUser / Get-LocalGroup / Get-LocalGroupMember
# (Microsoft.PowerShell.Commands.LocalUser / LocalGroup / LocalPrincipal:
# Name, SID, Enabled, Description, LastLogon, PrincipalSource, ObjectClass):
# https://learn.microsoft.com/en-us/powershell/module/microsoft.powershell.localaccounts/get-localuser
# https://learn.microsoft.com/en-us/powershell/module/microsoft.powershell.localaccounts/get-localgroupmember
function New-FakeLocalUser {
  param([string]$Name, [string]$Sid, [bool]$Enabled = $true, $LastLogon = $null)
  [pscustomobject][ordered]@{ Name = $Name; Enabled = $Enabled; SID = $Sid; Description = ''; LastLogon = $LastLogon; PrincipalSource = 'Local'; ObjectClass = 'User' }
}
function New-FakeLocalGroup { param([string]$Name, [string]$Sid) [pscustomobject][ordered]@{ Name = $Name; SID = $Sid; Description = ''; PrincipalSource = 'Local'; ObjectClass = 'Group' } }
function New-FakeLocalPrincipal { param([string]$Name, [string]$Sid, [string]$ObjectClass = 'User', [string]$PrincipalSource = 'Local') [pscustomobject][ordered]@{ Name = $Name; SID = $Sid; ObjectClass = $ObjectClass; PrincipalSource = $PrincipalSource } }

# MSFT_NetFirewallRule (Enabled True|False, Direction Inbound|Outbound,
# Action Allow|Block, Profile Any|Domain|Private|Public) and its port and
# application filters: https://learn.microsoft.com/en-us/powershell/module/netsecurity/get-netfirewallrule
# https://learn.microsoft.com/en-us/powershell/module/netsecurity/get-netfirewallportfilter
function New-FakeNetFirewallRule {
  param([string]$Name, [string]$DisplayName, [string]$DisplayGroup = $null, [string]$Direction = 'Inbound', [string]$Action = 'Allow')
  New-TestCim 'MSFT_NetFirewallRule' ([ordered]@{ Name = $Name; DisplayName = $DisplayName; DisplayGroup = $DisplayGroup; Group = $DisplayGroup; Enabled = 'True'; Direction = $Direction; Action = $Action; Profile = 'Any'; PrimaryStatus = 'OK' }) 'root/StandardCimv2'
}
function New-FakeNetFirewallPortFilter { param([string]$Protocol = 'TCP', [string[]]$LocalPort = @('Any'), [string[]]$RemotePort = @('Any')) New-TestCim 'MSFT_NetProtocolPortFilter' ([ordered]@{ Protocol = $Protocol; LocalPort = $LocalPort; RemotePort = $RemotePort }) 'root/StandardCimv2' }
function New-FakeNetFirewallApplicationFilter { param([string]$Program = 'Any') New-TestCim 'MSFT_NetApplicationFilter' ([ordered]@{ Program = $Program; Package = $null }) 'root/StandardCimv2' }

# The Uninstall registry key's values (DisplayName, DisplayVersion,
# Publisher, InstallLocation, InstallDate YYYYMMDD, SystemComponent) as
# Get-ItemProperty returns them:
# https://learn.microsoft.com/en-us/windows/win32/msi/uninstall-registry-key
function New-FakeUninstallEntry {
  param([string]$DisplayName, [string]$DisplayVersion = '1.0', [string]$Publisher = 'Vendor', [string]$InstallLocation = $null, [int]$SystemComponent = 0)
  $o = [ordered]@{ DisplayName = $DisplayName; DisplayVersion = $DisplayVersion; Publisher = $Publisher; InstallDate = '20231104'; PSChildName = ('{' + [guid]::NewGuid().ToString() + '}'); PSProvider = 'Microsoft.PowerShell.Core\Registry' }
  if ($InstallLocation) { $o.InstallLocation = $InstallLocation }
  if ($SystemComponent) { $o.SystemComponent = $SystemComponent }
  [pscustomobject]$o
}

# A robocopy /UNILOG log (UTF-16LE with BOM), written where the /UNILOG:
# argument says. Error lines "<date> <time> ERROR <n> (0x<hex>) <action>
# <path>" with the system message on the next line, repeated for each
# retry; the exit code bit mask (>= 8 failure):
# https://learn.microsoft.com/en-us/windows-server/administration/windows-commands/robocopy#exit-return-codes
# System error texts: https://learn.microsoft.com/en-us/windows/win32/debug/system-error-codes--0-499-
function Write-RobocopyLog {
  param([string[]]$Arguments, [object[]]$Errors = @(), [int]$Retries = 2, [switch]$NoSummary)
  $log = ($Arguments | Where-Object { $_ -like '/UNILOG:*' } | Select-Object -First 1).Substring(8)
  $src = $Arguments[0]; $dst = $Arguments[1]
  $lines = New-Object System.Collections.Generic.List[string]
  $lines.Add(''); $lines.Add('-------------------------------------------------------------------------------')
  $lines.Add('   ROBOCOPY     ::     Robust File Copy for Windows                              ')
  $lines.Add('-------------------------------------------------------------------------------'); $lines.Add('')
  $lines.Add('  Started : Monday, November 30, 2026 10:00:00 PM'); $lines.Add('   Source : ' + $src + '\'); $lines.Add('     Dest : ' + $dst + '\'); $lines.Add('')
  $lines.Add('    Files : *.*'); $lines.Add(''); $lines.Add('  Options : *.* /NDL /NFL /S /E /DCOPY:DAT /COPY:DATSO /PURGE /MIR /B /XJ /NP /R:2 /W:1 /BYTES'); $lines.Add('')
  $lines.Add('------------------------------------------------------------------------------'); $lines.Add('')
  foreach ($e in $Errors) {
    for ($try = 0; $try -le $Retries; $try++) {
      $lines.Add(('2026/11/30 22:00:0{0} ERROR {1} (0x{2:X8}) {3} {4}' -f $try, $e.Code, $e.Code, $e.Action, ($src + '\' + $e.Relative)))
      $lines.Add($e.Message); $lines.Add('')
      if ($try -lt $Retries) { $lines.Add('Waiting 1 seconds... Retrying...') }
    }
    $lines.Add('ERROR: RETRY LIMIT EXCEEDED.'); $lines.Add('')
  }
  if (-not $NoSummary) {
    $lines.Add('------------------------------------------------------------------------------'); $lines.Add('')
    $lines.Add('               Total    Copied   Skipped  Mismatch    FAILED    Extras')
    $lines.Add('    Dirs :         3         0         3         0         0         0')
    $lines.Add(('   Files :        10         {0}         0         0         {1}         0' -f (10 - $Errors.Count), $Errors.Count))
    $lines.Add('   Ended : Monday, November 30, 2026 10:00:05 PM')
  }
  $text = ($lines -join "`r`n") + "`r`n"
  [System.IO.File]::WriteAllText($log, $text, (New-Object System.Text.UnicodeEncoding $false, $true))
}

# An icacls /save file: UTF-16LE, a name line (relative to the saved
# folder's parent) then its SDDL line:
# https://learn.microsoft.com/en-us/windows-server/administration/windows-commands/icacls
function Write-IcaclsSaveFile {
  param([string]$Path, [string]$Root = 'X', [string[]]$ExtraSids = @())
  $extra = ($ExtraSids | ForEach-Object { '(A;OICI;0x1301bf;;;' + $_ + ')' }) -join ''
  $lines = @(
    $Root, ('D:AI(A;OICI;FA;;;BA)(A;OICI;FA;;;SY)' + $extra),
    ($Root + '\db'), 'D:AI(A;OICIID;FA;;;BA)(A;OICIID;FA;;;SY)',
    ($Root + '\db\ehr.mdf'), 'D:AI(A;ID;FA;;;BA)(A;ID;FA;;;SY)'
  )
  [System.IO.File]::WriteAllText($Path, (($lines -join "`r`n") + "`r`n"), (New-Object System.Text.UnicodeEncoding $false, $false))
}
