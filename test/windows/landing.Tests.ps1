# landing onto a rebuilt server: folders back with robocopy (mocked, Unicode
# log), ACLs back with icacls /restore (mocked) from a real icacls /save-shaped
# file, shares re-created with their permissions (New-SmbShare,
# Get-SmbShareAccess, Grant-SmbShareAccess: MSFT_SmbShare shapes),
# scheduled tasks re-registered from their XML (Task Scheduler schema), and
# what cannot be recreated listed as manual steps: a share whose path no
# longer exists, an account that does not exist here, a task with a stored
# password, a service only the vendor's installer creates, a SID that does
# not resolve.

BeforeAll {
  . $PSScriptRoot/helpers/Load.ps1 -Script landing
  $script:Base = Join-Path ([System.IO.Path]::GetTempPath()) ('rubicon-landing-' + [guid]::NewGuid())
  $script:Work = Join-Path $script:Base 'work'
  $script:Target = Join-Path $script:Base 'EHR/X'
  $script:ShareDir = Join-Path $script:Base 'EHR/Z'
  foreach ($d in $script:Work, $script:Target, $script:ShareDir) { $null = New-Item -ItemType Directory -Path $d -Force }
  $script:Acl = Join-Path $script:Base 'X.acl'
  $script:LocalSid = 'S-1-5-21-1111111111-2222222222-3333333333-1001'
  Write-IcaclsSaveFile -Path $script:Acl -Root 'X' -ExtraSids @($script:LocalSid)

  function Use-FakeWindows {
    param([int]$RobocopyExit = 1)
    $script:RobocopyExit = $RobocopyExit
    Mock robocopy { Write-RobocopyLog -Arguments $Arguments; $global:LASTEXITCODE = $script:RobocopyExit }
    Mock icacls { 'Successfully processed 3 files; Failed processing 0 files'; $global:LASTEXITCODE = 0 }
    Mock Resolve-RubiconSid { if ($Sid -eq $script:LocalSid) { return $null } return ('NT AUTHORITY\' + $Sid) }
    $script:Shares = @{}
    Mock Get-SmbShare { if ($script:Shares.ContainsKey($Name[0])) { $script:Shares[$Name[0]].share } }
    Mock Get-SmbShareAccess { @($script:Shares[$Name[0]].access) }
    Mock New-SmbShare {
      $script:Shares[$Name] = @{ share = (New-FakeSmbShare -Name $Name -Path $Path -Description $Description); access = @() }
      foreach ($pair in @(@('Full', $FullAccess), @('Change', $ChangeAccess), @('Read', $ReadAccess))) { foreach ($acct in @($pair[1] | Where-Object { $_ })) { $script:Shares[$Name].access += New-FakeSmbShareAccess -Name $Name -AccountName $acct -AccessRight $pair[0] } }
      $script:Shares[$Name].share
    }
    Mock Grant-SmbShareAccess { $script:Shares[$Name].access += New-FakeSmbShareAccess -Name $Name -AccountName $AccountName -AccessRight $AccessRight }
    Mock Block-SmbShareAccess { $script:Shares[$Name].access += New-FakeSmbShareAccess -Name $Name -AccountName $AccountName -AccessRight 'Full' -AccessControlType 'Deny' }
    Mock Register-ScheduledTask { [pscustomobject]@{ TaskName = $TaskName; TaskPath = $TaskPath; State = 'Ready' } }
    Mock Get-CimInstance -ParameterFilter { $ClassName -eq 'Win32_Service' } { if ($Filter -eq "Name='EHRApp'") { New-FakeWin32Service -Name 'EHRApp' -State 'Stopped' } }
  }
  function Get-LandingArgs {
    param([hashtable]$Extra = @{})
    $a = @{
      workDir = $script:Work
      folders = @(@{ source = '\\vault\share\run1\X'; destination = $script:Target; aclFile = $script:Acl })
      shares = @(@{ name = 'EHRZ'; path = $script:ShareDir; description = 'EHR exports'; access = @(@{ accountName = 'BUILTIN\Administrators'; accessControlType = 'Allow'; accessRight = 'Full' }, @{ accountName = 'EHR\Clinicians'; accessControlType = 'Allow'; accessRight = 'Change' }) })
      scheduledTasks = @(@{ path = '\Vendor\'; name = 'Nightly export'; xml = (New-FakeTaskXml -Command 'D:\EHR\bin\export.exe' -Arguments '/out D:\EHR\Y') })
      services = @(@{ name = 'EHRApp'; pathName = '"D:\EHR\bin\ehrapp.exe"' }, @{ name = 'EHRLicense'; pathName = '"C:\Program Files\Vendor\lic.exe" -service' })
    }
    foreach ($k in $Extra.Keys) { $a[$k] = $Extra[$k] }
    return $a
  }
}

AfterAll { Remove-Item -LiteralPath $script:Base -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'landing' {
  It 'restores the folder, its ACLs, the share with its permissions and the task, and lists what a person must do' {
    Use-FakeWindows
    $r = Invoke-TestScript -Arguments (Get-LandingArgs)
    $r.ExitCode | Should -Be 0
    $d = $r.Result.data
    $d.folders[0].robocopy.failed | Should -BeFalse
    $d.folders[0].acl.failed | Should -BeFalse
    $d.shares[0].action | Should -Be 'created'
    $d.scheduledTasks[0].action | Should -Be 'registered'
    ($d.services | Where-Object { $_.name -eq 'EHRApp' }).present | Should -BeTrue
    ($d.services | Where-Object { $_.name -eq 'EHRLicense' }).present | Should -BeFalse
    @($d.manualSteps | ForEach-Object { $_.reason }) | Should -Be @('sid-unresolved', 'service-missing')
    ($d.manualSteps | Where-Object { $_.reason -eq 'sid-unresolved' }).detail | Should -BeLike ('*' + $script:LocalSid + '*')
    ($d.manualSteps | Where-Object { $_.reason -eq 'service-missing' }).detail | Should -BeLike '*EHRLicense*lic.exe*'
  }
  It 'copies with robocopy /E by default and /MIR only when exact, then restores ACLs on the parent' {
    Use-FakeWindows
    $null = Invoke-TestScript -Arguments (Get-LandingArgs)
    Should -Invoke robocopy -Times 1 -Exactly -ParameterFilter { $Arguments -contains '/E' -and $Arguments -notcontains '/MIR' -and $Arguments -contains '/COPY:DATSO' -and $Arguments[1] -eq $script:Target }
    Should -Invoke icacls -Times 1 -Exactly -ParameterFilter { $Arguments[0] -eq (Split-Path -Parent $script:Target) -and $Arguments[1] -eq '/restore' -and $Arguments[2] -eq $script:Acl }
    $null = Invoke-TestScript -Arguments (Get-LandingArgs @{ folders = @(@{ source = '\\vault\share\run1\X'; destination = $script:Target; exact = $true }) })
    Should -Invoke robocopy -Times 1 -Exactly -ParameterFilter { $Arguments -contains '/MIR' }
  }
  It 'fails with LANDING_INCOMPLETE when robocopy cannot copy everything (exit 8), without restoring ACLs' {
    Use-FakeWindows -RobocopyExit 8
    $r = Invoke-TestScript -Arguments (Get-LandingArgs)
    $r.ExitCode | Should -Be 1
    $r.Result.error.code | Should -Be 'LANDING_INCOMPLETE'
    $r.Result.error.message | Should -BeLike ('*' + $script:Target + '*')
    $r.Result.error.details.folders[0].robocopy.bits | Should -Be @('failed')
    Should -Invoke icacls -Times 0 -Exactly
  }
  It 'refuses an ACL file saved for a folder of another name (acl-root-mismatch)' {
    Use-FakeWindows
    $other = Join-Path $script:Base 'Y.acl'
    Write-IcaclsSaveFile -Path $other -Root 'Y'
    $r = Invoke-TestScript -Arguments (Get-LandingArgs @{ folders = @(@{ source = '\\vault\share\run1\X'; destination = $script:Target; aclFile = $other }) })
    $r.Result.error.code | Should -Be 'LANDING_INCOMPLETE'
    $r.Result.error.details.manualSteps[0].reason | Should -Be 'acl-root-mismatch'
    Should -Invoke icacls -Times 0 -Exactly
  }
  It 'lists a share whose path no longer exists as a manual step and creates nothing' {
    Use-FakeWindows
    $r = Invoke-TestScript -Arguments (Get-LandingArgs @{ folders = @(); shares = @(@{ name = 'Gone'; path = (Join-Path $script:Base 'EHR/removed'); access = @() }) })
    $r.Result.data.shares[0].action | Should -Be 'manual'
    ($r.Result.data.manualSteps | Where-Object { $_.kind -eq 'share' }).reason | Should -Be 'path-missing'
    Should -Invoke New-SmbShare -Times 0 -Exactly
  }
  It 'grants what an existing share lacks and reports, without revoking, what it has extra' {
    Use-FakeWindows
    $script:Shares['EHRZ'] = @{ share = (New-FakeSmbShare -Name 'EHRZ' -Path $script:ShareDir); access = @((New-FakeSmbShareAccess -Name 'EHRZ' -AccountName 'BUILTIN\Administrators' -AccessRight 'Full'), (New-FakeSmbShareAccess -Name 'EHRZ' -AccountName 'Everyone' -AccessRight 'Read')) }
    $r = Invoke-TestScript -Arguments (Get-LandingArgs @{ folders = @() })
    $s = $r.Result.data.shares[0]
    $s.action | Should -Be 'updated'
    @($s.granted | ForEach-Object { $_.accountName }) | Should -Be @('EHR\Clinicians')
    @($s.extraAccess | ForEach-Object { $_.accountName }) | Should -Be @('Everyone')
    Should -Invoke Grant-SmbShareAccess -Times 1 -Exactly -ParameterFilter { $AccountName -eq 'EHR\Clinicians' -and $AccessRight -eq 'Change' }
    Should -Invoke New-SmbShare -Times 0 -Exactly
    $again = Invoke-TestScript -Arguments (Get-LandingArgs @{ folders = @() })
    $again.Result.data.shares[0].action | Should -Be 'unchanged'
  }
  It 'leaves a share of the same name for another path alone (path-conflict)' {
    Use-FakeWindows
    $script:Shares['EHRZ'] = @{ share = (New-FakeSmbShare -Name 'EHRZ' -Path 'D:\Elsewhere'); access = @() }
    $r = Invoke-TestScript -Arguments (Get-LandingArgs @{ folders = @() })
    ($r.Result.data.manualSteps | Where-Object { $_.kind -eq 'share' }).reason | Should -Be 'path-conflict'
    Should -Invoke Grant-SmbShareAccess -Times 0 -Exactly
  }
  It 'lists a share whose account does not exist here (account-not-found)' {
    Use-FakeWindows
    Mock New-SmbShare { throw [System.InvalidOperationException]::new('No mapping between account names and security IDs was done.') }
    $r = Invoke-TestScript -Arguments (Get-LandingArgs @{ folders = @() })
    $step = $r.Result.data.manualSteps | Where-Object { $_.kind -eq 'share' }
    $step.reason | Should -Be 'account-not-found'
    $step.detail | Should -BeLike '*No mapping between account names*'
  }
  It 'registers a task from its XML, and lists one with a stored password instead' {
    Use-FakeWindows
    $tasks = @(
      @{ path = '\Vendor\'; name = 'Nightly export'; xml = (New-FakeTaskXml -Command 'D:\EHR\bin\export.exe') },
      @{ path = '\Vendor\'; name = 'Send to lab'; xml = (New-FakeTaskXml -Command 'D:\EHR\bin\lab.exe' -UserId 'EHR\svc-lab' -LogonType 'Password') }
    )
    $r = Invoke-TestScript -Arguments (Get-LandingArgs @{ folders = @(); shares = @(); scheduledTasks = $tasks })
    @($r.Result.data.scheduledTasks | ForEach-Object { $_.action }) | Should -Be @('registered', 'manual')
    ($r.Result.data.scheduledTasks | Where-Object { $_.name -eq 'Send to lab' }).logonType | Should -Be 'Password'
    ($r.Result.data.manualSteps | Where-Object { $_.kind -eq 'scheduledTask' }).reason | Should -Be 'needs-password'
    Should -Invoke Register-ScheduledTask -Times 1 -Exactly -ParameterFilter { $TaskName -eq 'Nightly export' -and $TaskPath -eq '\Vendor\' -and $Force -and $Xml -like '*<Command>D:\EHR\bin\export.exe</Command>*' }
  }
  It 'lists a task Windows refuses to register (register-failed)' {
    Use-FakeWindows
    Mock Register-ScheduledTask { throw [System.UnauthorizedAccessException]::new('Access is denied.') }
    $r = Invoke-TestScript -Arguments (Get-LandingArgs @{ folders = @(); shares = @() })
    ($r.Result.data.manualSteps | Where-Object { $_.kind -eq 'scheduledTask' }).reason | Should -Be 'register-failed'
  }
  It 'refuses a malformed task XML (ARGS_INVALID)' {
    Use-FakeWindows
    $r = Invoke-TestScript -Arguments (Get-LandingArgs @{ folders = @(); shares = @(); scheduledTasks = @(@{ name = 't'; xml = '<Task><unclosed>' }) })
    $r.Result.error.code | Should -Be 'ARGS_INVALID'
  }
}

Describe 'landing from a restic repository (real restic)' {
  BeforeAll {
    $script:Repo = Join-Path $script:Base 'restic-repo'
    $script:RepoFile = Join-Path $script:Base 'restic-repo.location'
    $script:Pw = Join-Path $script:Base 'restic.pw'
    [System.IO.File]::WriteAllText($script:Pw, "test-only-password`n")
    [System.IO.File]::WriteAllText($script:RepoFile, $script:Repo + "`n")
    $script:Captured = Join-Path $script:Base 'old/EHR/X'
    $null = New-Item -ItemType Directory -Path (Join-Path $script:Captured 'forms') -Force
    [System.IO.File]::WriteAllText((Join-Path $script:Captured 'forms/intake é.pdf'), 'form bytes')
    [System.IO.File]::WriteAllText((Join-Path $script:Captured 'app.ini'), 'setting=1')
    $null = Invoke-RubiconNative -FilePath 'restic' -ArgumentList @('init', '--repo', $script:Repo, '--password-file', $script:Pw)
    $b = Invoke-RubiconResticBackup -Source $script:Captured -RepositoryFile $script:RepoFile -PasswordFile $script:Pw
    if (-not $b.complete) { throw 'the test backup failed' }
    $list = Invoke-RubiconNative -FilePath 'restic' -ArgumentList @('snapshots', '--json', '--repo', $script:Repo, '--password-file', $script:Pw)
    $script:Snapshot = [regex]::Match(($list.output -join ''), '"id":"([0-9a-f]{64})"').Groups[1].Value
    if ($script:Snapshot.Length -ne 64) { throw 'no snapshot id in restic snapshots --json' }
    function Get-ResticFolder {
      param([string]$Destination, [string]$InSnapshot = $script:Captured, [string]$Key = 'l-test')
      return @{ key = $Key; destination = $Destination; aclFile = $script:Acl; restic = @{ snapshot = $script:Snapshot; path = $InSnapshot; repositoryFile = $script:RepoFile; passwordFile = $script:Pw; options = @() } }
    }
  }
  It 'restores the captured folder into an absent destination in one move, restores its ACLs, and a re-run changes nothing' {
    Use-FakeWindows
    $dest = Join-Path $script:Base 'new1/EHR/X'
    $r = Invoke-TestScript -Arguments @{ workDir = $script:Work; folders = @(Get-ResticFolder $dest) }
    $r.ExitCode | Should -Be 0
    $f = $r.Result.data.folders[0]
    $f.restic.restored | Should -BeTrue
    $f.restic.exitCode | Should -Be 0
    $f.robocopy | Should -BeNullOrEmpty
    [System.IO.File]::ReadAllText((Join-Path $dest 'forms/intake é.pdf')) | Should -Be 'form bytes'
    [System.IO.File]::ReadAllText((Join-Path $dest 'app.ini')) | Should -Be 'setting=1'
    Test-Path -LiteralPath ($dest + '.rubicon-staging') | Should -BeFalse
    Should -Invoke icacls -Times 1 -Exactly -ParameterFilter { $Arguments[0] -eq (Split-Path -Parent $dest) -and $Arguments[1] -eq '/restore' }
    $again = Invoke-TestScript -Arguments @{ workDir = $script:Work; folders = @(Get-ResticFolder $dest) }
    $again.ExitCode | Should -Be 0
    $again.Result.data.folders[0].restic.alreadyLanded | Should -BeTrue
    $again.Result.data.folders[0].restic.restored | Should -BeFalse
  }
  It 'refuses a destination that holds files it did not put there (DESTINATION_NOT_EMPTY), touching nothing' {
    Use-FakeWindows
    $dest = Join-Path $script:Base 'new2/EHR/X'
    $null = New-Item -ItemType Directory -Path $dest -Force
    [System.IO.File]::WriteAllText((Join-Path $dest 'someone-elses.txt'), 'keep')
    $r = Invoke-TestScript -Arguments @{ workDir = $script:Work; folders = @(Get-ResticFolder $dest -Key 'l-other') }
    $r.ExitCode | Should -Be 1
    $r.Result.error.code | Should -Be 'DESTINATION_NOT_EMPTY'
    [System.IO.File]::ReadAllText((Join-Path $dest 'someone-elses.txt')) | Should -Be 'keep'
  }
  It 'fails with LANDING_INCOMPLETE (92) when the snapshot lacks the folder, leaving no staging and no ACLs restored' {
    Use-FakeWindows
    $dest = Join-Path $script:Base 'new3/EHR/X'
    $r = Invoke-TestScript -Arguments @{ workDir = $script:Work; folders = @(Get-ResticFolder $dest -InSnapshot '/D/EHR/NotThere' -Key 'l-missing') }
    $r.ExitCode | Should -Be 1
    $r.Result.error.code | Should -Be 'LANDING_INCOMPLETE'
    $r.Result.error.details.folders[0].restic.exitCode | Should -Be 92
    Test-Path -LiteralPath ($dest + '.rubicon-staging') | Should -BeFalse
    Test-Path -LiteralPath $dest | Should -BeFalse
    Should -Invoke icacls -Times 0 -Exactly
  }
  It 'fails with LANDING_INCOMPLETE when restic cannot open the repository (wrong password)' {
    Use-FakeWindows
    $bad = Join-Path $script:Base 'wrong.pw'
    [System.IO.File]::WriteAllText($bad, "not-it`n")
    $f = Get-ResticFolder (Join-Path $script:Base 'new4/EHR/X') -Key 'l-badpw'
    $f.restic.passwordFile = $bad
    $r = Invoke-TestScript -Arguments @{ workDir = $script:Work; folders = @($f) }
    $r.Result.error.code | Should -Be 'LANDING_INCOMPLETE'
    $r.Result.error.details.folders[0].restic.exitCode | Should -Not -Be 0
  }
  It 'refuses a restic option that is not name=value on one line, and a short snapshot id (ARGS_INVALID)' {
    Use-FakeWindows
    $f = Get-ResticFolder (Join-Path $script:Base 'new5/EHR/X') -Key 'l-args'
    $f.restic.options = @('--no-lock')
    (Invoke-TestScript -Arguments @{ workDir = $script:Work; folders = @($f) }).Result.error.code | Should -Be 'ARGS_INVALID'
    $f = Get-ResticFolder (Join-Path $script:Base 'new5/EHR/X') -Key 'l-args'
    $f.restic.snapshot = $script:Snapshot.Substring(0, 8)
    (Invoke-TestScript -Arguments @{ workDir = $script:Work; folders = @($f) }).Result.error.code | Should -Be 'ARGS_INVALID'
  }
}
