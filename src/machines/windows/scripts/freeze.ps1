# Rubicon script: freeze
# Version: 1
# Include: services
#
# Contract
#   Inputs   { services: string[] (service names, at least one),
#              statePath: string (absolute file on the server),
#              timeoutSeconds?: int (per service, default 120),
#              pollSeconds?: int (default 1),
#              disable?: bool (default true: start mode Disabled while
#              frozen, so no watchdog or recovery action restarts them) }
#   Result   data: { statePath, resumed, order: string[],
#              services: [{ name, requested, dependentOf, priorState,
#              priorStartMode, priorDelayedAutoStart, action
#              ("stopped"|"already-stopped"), startModeSetTo
#              ("Disabled"|null) }] }
#   Errors   ARGS_INVALID, SERVICE_NOT_FOUND (before anything is touched),
#            ACCESS_DENIED, SERVICE_STOP_FAILED, SERVICE_STOP_TIMEOUT
#            (details: service, waitedSeconds, state, stopped[]).
#   Destructive: stops services and changes their start mode; thaw undoes
#   both from the state file. Every running service that depends on a named
#   one is stopped too (first), and recorded. Order: dependents before what
#   they depend on.
#   Idempotent: the state file is written once, before anything changes,
#   and never overwritten; a re-run (after a crash or a timeout) reads it,
#   so the prior states recorded are those from before the first freeze.
#   A failed freeze leaves what it stopped stopped: run freeze again, or thaw.

function Invoke-RubiconFreeze {
  param($A)
  $names = @(Get-RubiconArg $A 'services' -Type array -Required)
  $statePath = Get-RubiconArg $A 'statePath' -Required
  $timeout = Get-RubiconArg $A 'timeoutSeconds' -Type int -Default 120
  $poll = Get-RubiconArg $A 'pollSeconds' -Type int -Default 1
  $disable = Get-RubiconArg $A 'disable' -Type bool -Default $true
  if ($names.Count -eq 0) { throw (New-RubiconError 'ARGS_INVALID' 'argument "services" must name at least one service') }
  foreach ($n in $names) { Assert-RubiconServiceName $n }
  $resumed = Test-Path -LiteralPath $statePath -PathType Leaf
  if ($resumed) {
    $state = ConvertFrom-RubiconJson (Read-RubiconTextFile $statePath)
  } else {
    $state = New-RubiconFreezePlan $names
    Write-RubiconStateFile $statePath $state
  }
  $stopped = New-Object System.Collections.Generic.List[string]
  $results = New-Object System.Collections.Generic.List[object]
  $byName = @{}
  foreach ($s in $state.services) { $byName[$s.name] = $s }
  foreach ($name in $state.order) {
    $s = $byName[$name]
    $setTo = $null
    if ($disable -and [string]$s.priorStartMode -ne 'Disabled') {
      try { Set-Service -Name $name -StartupType Disabled } catch { throw (ConvertTo-RubiconServiceError $_ $name 'SERVICE_STOP_FAILED' 'cannot set the start mode of' $stopped) }
      $setTo = 'Disabled'
    }
    $status = [string](Get-Service -Name $name).Status
    $action = 'already-stopped'
    if ($status -ne 'Stopped') {
      try { Stop-Service -Name $name -NoWait } catch { throw (ConvertTo-RubiconServiceError $_ $name 'SERVICE_STOP_FAILED' 'cannot stop' $stopped) }
      $waited = 0
      while ($true) {
        $status = [string](Get-Service -Name $name).Status
        if ($status -eq 'Stopped') { break }
        if ($waited -ge $timeout) {
          throw (New-RubiconError 'SERVICE_STOP_TIMEOUT' ('service ' + $name + ' did not stop within ' + $timeout + ' s (it is ' + $status + ')') ([ordered]@{ service = $name; waitedSeconds = $waited; state = $status; stopped = $stopped.ToArray(); statePath = $statePath }))
        }
        Start-Sleep -Seconds $poll
        $waited += $poll
      }
      $action = 'stopped'
    }
    $stopped.Add($name)
    $results.Add([ordered]@{ name = $name; requested = $s.requested; dependentOf = $s.dependentOf; priorState = $s.priorState; priorStartMode = $s.priorStartMode; priorDelayedAutoStart = $s.priorDelayedAutoStart; action = $action; startModeSetTo = $setTo })
  }
  return [ordered]@{ statePath = $statePath; resumed = $resumed; order = @($state.order); services = $results.ToArray() }
}

function New-RubiconFreezePlan {
  # Reads every named service and, recursively, the services that depend
  # on it; returns the state to record and the stop order (a service after
  # everything that depends on it). Reads only.
  param([string[]]$Names)
  $records = [ordered]@{}
  $dependents = @{}
  $queue = New-Object System.Collections.Generic.Queue[object]
  foreach ($n in $Names) { $queue.Enqueue(@($n, $true, $null)) }
  while ($queue.Count -gt 0) {
    $item = $queue.Dequeue()
    $name = $item[0]
    if ($records.Contains($name)) { if ($item[1]) { $records[$name].requested = $true }; continue }
    $cim = Get-RubiconServiceRecord $name
    $svc = Get-Service -Name $name
    $deps = New-Object System.Collections.Generic.List[string]
    foreach ($d in @($svc.DependentServices)) { if ($null -ne $d) { $deps.Add([string]$d.Name) } }
    $dependents[$name] = $deps.ToArray()
    $delayed = $false
    if ($null -ne $cim.PSObject.Properties['DelayedAutoStart'] -and $true -eq $cim.DelayedAutoStart) { $delayed = $true }
    $records[$name] = [ordered]@{ name = [string]$cim.Name; requested = [bool]$item[1]; dependentOf = $item[2]; priorState = [string]$cim.State; priorStartMode = [string]$cim.StartMode; priorDelayedAutoStart = $delayed }
    foreach ($d in $deps) { $queue.Enqueue(@($d, $false, $name)) }
  }
  $order = New-Object System.Collections.Generic.List[string]
  $visiting = @{}
  foreach ($n in $records.Keys) { Add-RubiconStopOrder $n $dependents $order $visiting }
  return [ordered]@{ version = 1; createdAt = (ConvertTo-RubiconIsoTime ([DateTime]::UtcNow)); order = $order.ToArray(); services = @($records.Values) }
}

function Add-RubiconStopOrder {
  param([string]$Name, $Dependents, $Order, $Visiting)
  if ($Order.Contains($Name) -or $Visiting.ContainsKey($Name)) { return }
  $Visiting[$Name] = $true
  foreach ($d in $Dependents[$Name]) { Add-RubiconStopOrder $d $Dependents $Order $Visiting }
  $Order.Add($Name)
}
