# Rubicon script library: services (included by freeze, thaw, landing)
# Version: 1
#
# Windows service helpers shared by the scripts that name "# Include:
# services". Only defines functions.

function Assert-RubiconServiceName {
  param([string]$Name)
  if ($Name -notmatch '^[A-Za-z0-9_.$ -]{1,256}$') { throw (New-RubiconError 'ARGS_INVALID' ('"' + $Name + '" is not a service name (letters, digits, space, _ . $ -)')) }
}

function Get-RubiconServiceRecord {
  # Win32_Service (StartMode Auto|Manual|Disabled|Boot|System, State
  # Running|Stopped|...), one instance per name, or SERVICE_NOT_FOUND.
  param([string]$Name)
  $cim = @(Get-CimInstance -ClassName Win32_Service -Filter ("Name='" + $Name + "'"))
  if ($cim.Count -eq 0) { throw (New-RubiconError 'SERVICE_NOT_FOUND' ('service ' + $Name + ' does not exist on this server') ([ordered]@{ service = $Name })) }
  return $cim[0]
}

function ConvertTo-RubiconServiceError {
  # A service cmdlet's failure as a stable error naming the service: access
  # denied (Win32 error 5 anywhere in the chain) is ACCESS_DENIED.
  param($ErrorRecord, [string]$Name, [string]$Code, [string]$Verb, $Done)
  $e = $ErrorRecord.Exception
  $denied = $false
  $walk = $e
  while ($null -ne $walk) {
    if ($walk -is [System.ComponentModel.Win32Exception] -and $walk.NativeErrorCode -eq 5) { $denied = $true }
    if ($walk -is [System.UnauthorizedAccessException]) { $denied = $true }
    $walk = $walk.InnerException
  }
  $message = $Verb + ' service ' + $Name + ': ' + $e.Message
  $details = [ordered]@{ service = $Name; stopped = @($Done) }
  if ($denied) { return (New-RubiconError 'ACCESS_DENIED' $message $details) }
  return (New-RubiconError $Code $message $details)
}

function Write-RubiconStateFile {
  # Atomic: a temporary file beside it, then a rename; never overwrites.
  param([string]$Path, $State)
  $dir = [System.IO.Path]::GetDirectoryName($Path)
  if ($dir -and -not [System.IO.Directory]::Exists($dir)) { $null = [System.IO.Directory]::CreateDirectory($dir) }
  $tmp = $Path + '.tmp'
  [System.IO.File]::WriteAllText($tmp, (ConvertTo-RubiconJson $State), (New-Object System.Text.UTF8Encoding $false))
  [System.IO.File]::Move($tmp, $Path)
}

function Get-RubiconServiceReturnMeaning {
  # Pure: Win32_Service StartService/StopService return values (the
  # documented list; anything else is "other").
  param([int]$Code)
  $m = @{
    0 = 'the request was accepted'; 1 = 'the request is not supported'; 2 = 'access denied'; 3 = 'dependent services are running'
    4 = 'the control code is not valid for the service'; 5 = 'the service cannot accept control messages now'; 6 = 'the service has not been started'
    7 = 'the service did not respond in time'; 8 = 'unknown failure'; 9 = 'the service executable was not found'; 10 = 'the service is already running'
    11 = 'the service database is locked'; 12 = 'a dependency was removed'; 13 = 'a dependency service was not found'; 14 = 'the service is disabled'
    15 = 'the service logon failed'; 16 = 'the service is marked for deletion'; 17 = 'the service has no thread'; 18 = 'circular dependency'
    19 = 'a service with this name is running'; 20 = 'invalid service name'; 21 = 'invalid parameter'; 22 = 'the service account is invalid or lacks rights'
    23 = 'the service exists'; 24 = 'the service is paused'
  }
  if ($m.ContainsKey($Code)) { return $m[$Code] }
  return 'other'
}
