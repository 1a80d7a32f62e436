# freeze and thaw against a simulated service control manager: the
# Windows-only cmdlets are mocked with outputs shaped like Windows' own
# (Win32_Service, ServiceController, Win32_Service StartService return
# values; see helpers/WindowsShapes.ps1), including a service that will
# not stop, access denied and a service that does not exist. The state
# file, ordering and idempotence run for real.

BeforeAll {
  . $PSScriptRoot/helpers/Load.ps1 -Script freeze
  . (Join-Path $PSScriptRoot '../../src/machines/windows/scripts/thaw.ps1')
  $script:Work = Join-Path ([System.IO.Path]::GetTempPath()) ('rubicon-freeze-' + [guid]::NewGuid())
  $null = New-Item -ItemType Directory -Path $script:Work

  function Reset-Scm {
    # EHRApp (delayed auto-start) is what EHRWeb and EHRReports depend on;
    # EHRSync is unrelated and already stopped before the freeze.
    $script:Scm = [ordered]@{
      EHRApp = @{ State = 'Running'; StartMode = 'Auto'; Delayed = $true; Dependents = @('EHRWeb', 'EHRReports') }
      EHRWeb = @{ State = 'Running'; StartMode = 'Manual'; Delayed = $false; Dependents = @() }
      EHRReports = @{ State = 'Running'; StartMode = 'Auto'; Delayed = $false; Dependents = @() }
      EHRSync = @{ State = 'Stopped'; StartMode = 'Manual'; Delayed = $false; Dependents = @() }
    }
    $script:Calls = New-Object System.Collections.Generic.List[string]
  }
  function Use-FakeScm {
    Mock Get-CimInstance -ParameterFilter { $ClassName -eq 'Win32_Service' } {
      $name = ([regex]::Match($Filter, "Name='([^']+)'")).Groups[1].Value
      if (-not $script:Scm.Contains($name)) { return }
      $s = $script:Scm[$name]
      New-FakeWin32Service -Name $name -State $s.State -StartMode $s.StartMode -DelayedAutoStart $s.Delayed
    }
    Mock Get-Service {
      $n = $Name[0]
      if (-not $script:Scm.Contains($n)) { throw "Cannot find any service with service name '$n'." }
      # ServiceControllerStatus spells the pending states without a space (StopPending).
      $deps = @($script:Scm[$n].Dependents | ForEach-Object { New-FakeServiceController -Name $_ -Status ($script:Scm[$_].State -replace ' ', '') })
      New-FakeServiceController -Name $n -Status ($script:Scm[$n].State -replace ' ', '') -DependentServices $deps
    }
    Mock Stop-Service { $script:Calls.Add('stop ' + $Name[0]); $script:Scm[$Name[0]].State = 'Stopped' }
    Mock Set-Service { $script:Calls.Add('mode ' + $Name + ' ' + $StartupType); $script:Scm[$Name].StartMode = @{ Automatic = 'Auto'; Manual = 'Manual'; Disabled = 'Disabled' }[$StartupType] }
    Mock Set-ItemProperty -ParameterFilter { $LiteralPath -like 'HKLM:\SYSTEM\CurrentControlSet\Services\*' } { $n = Split-Path -Leaf $LiteralPath; $Value | Should -BeOfType [int]; $Name | Should -Be 'DelayedAutostart'; $script:Calls.Add('delayed ' + $n + ' ' + $Value); $script:Scm[$n].Delayed = ($Value -eq 1) }
    Mock Invoke-CimMethod -ParameterFilter { $MethodName -eq 'StartService' } { $n = $InputObject.Name; $script:Calls.Add('start ' + $n); $script:Scm[$n].State = 'Running'; New-FakeServiceMethodResult 0 }
    Mock Start-Sleep { }
  }
}

AfterAll { Remove-Item -LiteralPath $script:Work -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'freeze' {
  BeforeEach { Reset-Scm; Use-FakeScm; $script:State = Join-Path $script:Work ('state-' + [guid]::NewGuid() + '.json') }

  It 'stops dependents before what they depend on, disables them, and records each prior state' {
    $r = Invoke-TestScript -Name freeze -Arguments @{ services = @('EHRApp'); statePath = $script:State }
    $r.ExitCode | Should -Be 0
    $r.Result.data.order | Should -Be @('EHRWeb', 'EHRReports', 'EHRApp')
    @($script:Calls | Where-Object { $_ -like 'stop *' }) | Should -Be @('stop EHRWeb', 'stop EHRReports', 'stop EHRApp')
    $app = $r.Result.data.services | Where-Object { $_.name -eq 'EHRApp' }
    $app.priorState | Should -Be 'Running'
    $app.priorStartMode | Should -Be 'Auto'
    $app.priorDelayedAutoStart | Should -BeTrue
    $app.requested | Should -BeTrue
    $app.startModeSetTo | Should -Be 'Disabled'
    ($r.Result.data.services | Where-Object { $_.name -eq 'EHRWeb' }).dependentOf | Should -Be 'EHRApp'
    foreach ($n in 'EHRApp', 'EHRWeb', 'EHRReports') { $script:Scm[$n].State | Should -Be 'Stopped'; $script:Scm[$n].StartMode | Should -Be 'Disabled' }
    $saved = ConvertFrom-RubiconJson (Read-RubiconTextFile $script:State)
    @($saved.order) | Should -Be @('EHRWeb', 'EHRReports', 'EHRApp')
    ($saved.services | Where-Object { $_.name -eq 'EHRWeb' }).priorStartMode | Should -Be 'Manual'
  }
  It 'disables a service before stopping it, so nothing restarts it in between' {
    $null = Invoke-TestScript -Name freeze -Arguments @{ services = @('EHRWeb'); statePath = $script:State }
    @($script:Calls) | Should -Be @('mode EHRWeb Disabled', 'stop EHRWeb')
  }
  It 'leaves an already stopped service alone and records it as such' {
    $r = Invoke-TestScript -Name freeze -Arguments @{ services = @('EHRSync'); statePath = $script:State; disable = $false }
    $r.Result.data.services[0].action | Should -Be 'already-stopped'
    $r.Result.data.services[0].startModeSetTo | Should -BeNullOrEmpty
    Should -Invoke Stop-Service -Times 0 -Exactly
    Should -Invoke Set-Service -Times 0 -Exactly
  }
  It 'fails with SERVICE_STOP_TIMEOUT naming the service that will not stop, and what it had stopped' {
    Mock Stop-Service { $script:Calls.Add('stop ' + $Name[0]); if ($Name[0] -eq 'EHRApp') { $script:Scm[$Name[0]].State = 'Stop Pending' } else { $script:Scm[$Name[0]].State = 'Stopped' } }
    $r = Invoke-TestScript -Name freeze -Arguments @{ services = @('EHRApp'); statePath = $script:State; timeoutSeconds = 5; pollSeconds = 1 }
    $r.ExitCode | Should -Be 1
    $r.Result.error.code | Should -Be 'SERVICE_STOP_TIMEOUT'
    $r.Result.error.message | Should -BeLike '*EHRApp did not stop within 5 s*'
    $r.Result.error.details.service | Should -Be 'EHRApp'
    $r.Result.error.details.stopped | Should -Be @('EHRWeb', 'EHRReports')
    Should -Invoke Start-Sleep -Times 5 -Exactly
  }
  It 'fails with ACCESS_DENIED when the service control manager refuses (Win32 error 5)' {
    Mock Stop-Service { throw [System.InvalidOperationException]::new("Cannot open EHRWeb service on computer '.'.", [System.ComponentModel.Win32Exception]::new(5, 'Access is denied')) }
    $r = Invoke-TestScript -Name freeze -Arguments @{ services = @('EHRApp'); statePath = $script:State }
    $r.ExitCode | Should -Be 1
    $r.Result.error.code | Should -Be 'ACCESS_DENIED'
    $r.Result.error.details.service | Should -Be 'EHRWeb'
  }
  It 'refuses a service that does not exist before touching anything (SERVICE_NOT_FOUND)' {
    $r = Invoke-TestScript -Name freeze -Arguments @{ services = @('EHRApp', 'NoSuchSvc'); statePath = $script:State }
    $r.Result.error.code | Should -Be 'SERVICE_NOT_FOUND'
    $r.Result.error.details.service | Should -Be 'NoSuchSvc'
    Should -Invoke Stop-Service -Times 0 -Exactly
    Should -Invoke Set-Service -Times 0 -Exactly
    Test-Path -LiteralPath $script:State | Should -BeFalse
  }
  It 'refuses a name that is not a service name' {
    $r = Invoke-TestScript -Name freeze -Arguments @{ services = @("x' OR Name='y"); statePath = $script:State }
    $r.Result.error.code | Should -Be 'ARGS_INVALID'
  }
  It 'is idempotent: a re-run keeps the states recorded before the first run' {
    $null = Invoke-TestScript -Name freeze -Arguments @{ services = @('EHRApp'); statePath = $script:State }
    $again = Invoke-TestScript -Name freeze -Arguments @{ services = @('EHRApp'); statePath = $script:State }
    $again.ExitCode | Should -Be 0
    $again.Result.data.resumed | Should -BeTrue
    ($again.Result.data.services | Where-Object { $_.name -eq 'EHRApp' }).priorState | Should -Be 'Running'
    ($again.Result.data.services | Where-Object { $_.name -eq 'EHRApp' }).priorStartMode | Should -Be 'Auto'
    @($again.Result.data.services | ForEach-Object { $_.action }) | Should -Be @('already-stopped', 'already-stopped', 'already-stopped')
  }
}

Describe 'thaw' {
  BeforeEach {
    Reset-Scm; Use-FakeScm
    $script:State = Join-Path $script:Work ('state-' + [guid]::NewGuid() + '.json')
    # What freeze of EHRApp and EHRSync records (its own test above shows
    # it writes this), with the services as freeze leaves them.
    [System.IO.File]::WriteAllText($script:State, '{"version":1,"createdAt":"2026-11-30T22:00:00.000Z","order":["EHRWeb","EHRReports","EHRApp","EHRSync"],"services":[' +
      '{"name":"EHRApp","requested":true,"dependentOf":null,"priorState":"Running","priorStartMode":"Auto","priorDelayedAutoStart":true},' +
      '{"name":"EHRSync","requested":true,"dependentOf":null,"priorState":"Stopped","priorStartMode":"Manual","priorDelayedAutoStart":false},' +
      '{"name":"EHRWeb","requested":false,"dependentOf":"EHRApp","priorState":"Running","priorStartMode":"Manual","priorDelayedAutoStart":false},' +
      '{"name":"EHRReports","requested":false,"dependentOf":"EHRApp","priorState":"Running","priorStartMode":"Auto","priorDelayedAutoStart":false}]}')
    foreach ($n in @($script:Scm.Keys)) { $script:Scm[$n].State = 'Stopped'; $script:Scm[$n].StartMode = 'Disabled'; $script:Scm[$n].Delayed = $false }
  }

  It 'restores each start mode (delayed auto-start too) and starts what was running, dependencies first' {
    $r = Invoke-TestScript -Name thaw -Arguments @{ statePath = $script:State }
    $r.ExitCode | Should -Be 0
    @($script:Calls | Where-Object { $_ -like 'start *' }) | Should -Be @('start EHRApp', 'start EHRReports', 'start EHRWeb')
    $script:Calls | Should -Contain 'mode EHRApp Automatic'
    $script:Calls | Should -Contain 'delayed EHRApp 1'
    $script:Calls | Should -Contain 'mode EHRWeb Manual'
    $script:Scm.EHRApp.StartMode | Should -Be 'Auto'
    $script:Scm.EHRApp.Delayed | Should -BeTrue
    $script:Scm.EHRReports.Delayed | Should -BeFalse
    foreach ($n in 'EHRApp', 'EHRWeb', 'EHRReports') { $script:Scm[$n].State | Should -Be 'Running' }
  }
  It 'leaves a service that was stopped before the freeze stopped, with its start mode back' {
    $r = Invoke-TestScript -Name thaw -Arguments @{ statePath = $script:State }
    ($r.Result.data.services | Where-Object { $_.name -eq 'EHRSync' }).action | Should -Be 'left-stopped'
    $script:Scm.EHRSync.State | Should -Be 'Stopped'
    $script:Scm.EHRSync.StartMode | Should -Be 'Manual'
  }
  It 'renames the state file once done, and a re-run converges to the same state' {
    $null = Invoke-TestScript -Name thaw -Arguments @{ statePath = $script:State }
    Test-Path -LiteralPath $script:State | Should -BeFalse
    Test-Path -LiteralPath ($script:State + '.thawed') | Should -BeTrue
    $again = Invoke-TestScript -Name thaw -Arguments @{ statePath = $script:State }
    $again.ExitCode | Should -Be 0
    $again.Result.data.reapplied | Should -BeTrue
    ($again.Result.data.services | Where-Object { $_.name -eq 'EHRApp' }).action | Should -Be 'already-running'
  }
  It 'reports StartService return value <Rv> as <Code>' -ForEach @(
    @{ Rv = 2; Code = 'ACCESS_DENIED' },
    @{ Rv = 15; Code = 'SERVICE_START_FAILED' }
  ) {
    Mock Invoke-CimMethod -ParameterFilter { $MethodName -eq 'StartService' } { New-FakeServiceMethodResult $Rv }
    $r = Invoke-TestScript -Name thaw -Arguments @{ statePath = $script:State }
    $r.ExitCode | Should -Be 1
    $r.Result.error.code | Should -Be $Code
    $r.Result.error.details.service | Should -Be 'EHRApp'
    $r.Result.error.details.returnValue | Should -Be $Rv
    Test-Path -LiteralPath $script:State | Should -BeTrue
  }
  It 'fails with SERVICE_START_TIMEOUT when a service never reaches Running' {
    Mock Invoke-CimMethod -ParameterFilter { $MethodName -eq 'StartService' } { $script:Scm[$InputObject.Name].State = 'Start Pending'; New-FakeServiceMethodResult 0 }
    $r = Invoke-TestScript -Name thaw -Arguments @{ statePath = $script:State; timeoutSeconds = 3 }
    $r.Result.error.code | Should -Be 'SERVICE_START_TIMEOUT'
    $r.Result.error.details.service | Should -Be 'EHRApp'
  }
  It 'says STATE_NOT_FOUND when there is nothing to thaw' {
    $r = Invoke-TestScript -Name thaw -Arguments @{ statePath = (Join-Path $script:Work 'never-frozen.json') }
    $r.Result.error.code | Should -Be 'STATE_NOT_FOUND'
  }
}
