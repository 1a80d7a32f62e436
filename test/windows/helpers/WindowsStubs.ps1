# Stubs of the Windows-only commands the scripts call, defined only where
# the command does not exist (Linux): Pester can mock only a command that
# exists. Each has the parameters the scripts pass (so ParameterFilter can
# see them) and throws when a test forgot to mock it: nothing Windows-only
# ever runs for real here, and nothing is silently a no-op.

function Test-StubNeeded { param([string]$Name) return ($null -eq (Get-Command -Name $Name -ErrorAction SilentlyContinue)) }

$stubs = [ordered]@{
  'Get-CimInstance' = 'param([string]$ClassName, [string]$Filter, [string]$Namespace)'
  'Invoke-CimMethod' = 'param([string]$ClassName, $InputObject, [string]$MethodName, [System.Collections.IDictionary]$Arguments)'
  'Remove-CimInstance' = 'param($InputObject)'
  'Get-Service' = 'param([string[]]$Name)'
  'Stop-Service' = 'param([string[]]$Name, [switch]$NoWait, [switch]$Force)'
  'Start-Service' = 'param([string[]]$Name)'
  'Set-Service' = 'param([string]$Name, [string]$StartupType)'
  'Get-ScheduledTask' = 'param([string]$TaskName, [string]$TaskPath)'
  'Export-ScheduledTask' = 'param([string]$TaskName, [string]$TaskPath)'
  'Register-ScheduledTask' = 'param([string]$Xml, [string]$TaskName, [string]$TaskPath, [switch]$Force)'
  'Get-SmbShare' = 'param([string[]]$Name)'
  'Get-SmbShareAccess' = 'param([string[]]$Name)'
  'New-SmbShare' = 'param([string]$Name, [string]$Path, [string]$Description, [string[]]$FullAccess, [string[]]$ChangeAccess, [string[]]$ReadAccess, [string[]]$NoAccess)'
  'Grant-SmbShareAccess' = 'param([string]$Name, [string]$AccountName, [string]$AccessRight, [switch]$Force)'
  'Block-SmbShareAccess' = 'param([string]$Name, [string]$AccountName, [switch]$Force)'
  'Get-IISSite' = 'param([string]$Name)'
  'Get-IISAppPool' = 'param([string]$Name)'
  'Get-OdbcDsn' = 'param([string]$Name, [string]$Platform, [string]$DsnType)'
  'Get-LocalUser' = 'param([string]$Name)'
  'Get-LocalGroup' = 'param([string]$Name)'
  'Get-LocalGroupMember' = 'param([string]$Group)'
  'Get-NetFirewallRule' = 'param([string]$Enabled)'
  'Get-NetFirewallPortFilter' = 'param($AssociatedNetFirewallRule)'
  'Get-NetFirewallApplicationFilter' = 'param($AssociatedNetFirewallRule)'
  'Get-Volume' = 'param([string]$DriveLetter)'
  'New-SmbMapping' = 'param([string]$RemotePath, [string]$UserName, [string]$Password, [bool]$Persistent)'
  'Get-SmbMapping' = 'param([string]$RemotePath)'
  'Remove-SmbMapping' = 'param([string]$RemotePath, [switch]$Force, [switch]$UpdateProfile)'
  'Get-Acl' = 'param([string]$LiteralPath)'
  'robocopy' = 'param([Parameter(ValueFromRemainingArguments = $true)][string[]]$Arguments)'
  'icacls' = 'param([Parameter(ValueFromRemainingArguments = $true)][string[]]$Arguments)'
  'cmd.exe' = 'param([Parameter(ValueFromRemainingArguments = $true)][string[]]$Arguments)'
}
foreach ($name in $stubs.Keys) {
  if (-not (Test-StubNeeded $name)) { continue }
  $body = $stubs[$name] + "`n throw ('stub ' + '" + $name + "' + ' was called without a Mock: a test must say what Windows returns')"
  Set-Item -Path ('function:script:' + $name) -Value ([scriptblock]::Create($body))
}
