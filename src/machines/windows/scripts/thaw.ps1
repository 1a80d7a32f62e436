# Rubicon script: thaw
# Version: 1
# Include: services
#
# Contract
#   Inputs   { statePath: string (the file freeze wrote),
#              timeoutSeconds?: int (per service, default 120),
#              pollSeconds?: int (default 1) }
#   Result   data: { statePath, reapplied, services: [{ name, startMode
#              (restored Win32 StartMode), delayedAutoStart, priorState,
#              action ("started"|"already-running"|"left-stopped"), state }] }
#   Errors   ARGS_INVALID, STATE_NOT_FOUND (no state file and no
#            <statePath>.thawed), ACCESS_DENIED, SERVICE_NOT_FOUND,
#            SERVICE_START_FAILED (details: service, returnValue, meaning),
#            SERVICE_START_TIMEOUT.
#   Destructive: changes start modes and starts services, exactly back to
#   what freeze recorded: the start mode (and delayed auto-start) of every
#   service, and Running for those that were running; a service that was
#   stopped before the freeze stays stopped. Order: the reverse of the stop
#   order (what others depend on first).
#   Idempotent: on success the state file is renamed <statePath>.thawed;
#   a re-run reads that one and converges to the same state.

function Invoke-RubiconThaw {
  param($A)
  $statePath = Get-RubiconArg $A 'statePath' -Required
  $timeout = Get-RubiconArg $A 'timeoutSeconds' -Type int -Default 120
  $poll = Get-RubiconArg $A 'pollSeconds' -Type int -Default 1
  $thawed = $statePath + '.thawed'
  $reapplied = $false
  $source = $statePath
  if (-not (Test-Path -LiteralPath $statePath -PathType Leaf)) {
    if (-not (Test-Path -LiteralPath $thawed -PathType Leaf)) { throw (New-RubiconError 'STATE_NOT_FOUND' ('no freeze state at ' + $statePath + ' (nor ' + $thawed + '): nothing to thaw') ([ordered]@{ statePath = $statePath })) }
    $source = $thawed
    $reapplied = $true
  }
  $state = ConvertFrom-RubiconJson (Read-RubiconTextFile $source)
  $byName = @{}
  foreach ($s in $state.services) { $byName[$s.name] = $s }
  $order = @($state.order)
  [System.Array]::Reverse($order)
  $results = New-Object System.Collections.Generic.List[object]
  foreach ($name in $order) {
    $s = $byName[$name]
    Restore-RubiconStartMode $name ([string]$s.priorStartMode) ([bool]$s.priorDelayedAutoStart)
    $status = [string](Get-Service -Name $name).Status
    $action = 'left-stopped'
    if ([string]$s.priorState -eq 'Running') {
      $action = 'already-running'
      if ($status -ne 'Running') {
        $cim = Get-RubiconServiceRecord $name
        $r = Invoke-CimMethod -InputObject $cim -MethodName StartService
        $rv = [int]$r.ReturnValue
        if ($rv -eq 2) { throw (New-RubiconError 'ACCESS_DENIED' ('cannot start service ' + $name + ': access denied (StartService returned 2)') ([ordered]@{ service = $name; returnValue = $rv })) }
        if ($rv -ne 0 -and $rv -ne 10) {
          throw (New-RubiconError 'SERVICE_START_FAILED' ('cannot start service ' + $name + ': StartService returned ' + $rv + ' (' + (Get-RubiconServiceReturnMeaning $rv) + ')') ([ordered]@{ service = $name; returnValue = $rv; meaning = (Get-RubiconServiceReturnMeaning $rv) }))
        }
        $waited = 0
        while ($true) {
          $status = [string](Get-Service -Name $name).Status
          if ($status -eq 'Running') { break }
          if ($waited -ge $timeout) { throw (New-RubiconError 'SERVICE_START_TIMEOUT' ('service ' + $name + ' did not reach Running within ' + $timeout + ' s (it is ' + $status + ')') ([ordered]@{ service = $name; waitedSeconds = $waited; state = $status })) }
          Start-Sleep -Seconds $poll
          $waited += $poll
        }
        $action = 'started'
      }
    }
    $results.Add([ordered]@{ name = $name; startMode = [string]$s.priorStartMode; delayedAutoStart = [bool]$s.priorDelayedAutoStart; priorState = [string]$s.priorState; action = $action; state = $status })
  }
  if (-not $reapplied) {
    if (Test-Path -LiteralPath $thawed) { [System.IO.File]::Delete($thawed) }
    [System.IO.File]::Move($statePath, $thawed)
  }
  return [ordered]@{ statePath = $statePath; reapplied = $reapplied; services = $results.ToArray() }
}

function Restore-RubiconStartMode {
  # Win32_Service StartMode -> Set-Service -StartupType (Auto is
  # Automatic). Delayed auto-start is the service key's DelayedAutostart
  # value: Set-Service cannot set it on Windows PowerShell 5.1.
  param([string]$Name, [string]$StartMode, [bool]$Delayed)
  $type = $null
  switch ($StartMode) { 'Auto' { $type = 'Automatic' } 'Manual' { $type = 'Manual' } 'Disabled' { $type = 'Disabled' } }
  if ($null -eq $type) { return }
  try { Set-Service -Name $Name -StartupType $type } catch { throw (ConvertTo-RubiconServiceError $_ $Name 'SERVICE_START_FAILED' 'cannot restore the start mode of' @()) }
  if ($type -eq 'Automatic') {
    $key = 'HKLM:\SYSTEM\CurrentControlSet\Services\' + $Name
    [int]$value = 0
    if ($Delayed) { $value = 1 }
    # An Int32 value is written as REG_DWORD (RegistryKey.SetValue); -Type
    # is a registry-only dynamic parameter, left out so the call is the same everywhere.
    Set-ItemProperty -LiteralPath $key -Name 'DelayedAutostart' -Value $value
  }
}
