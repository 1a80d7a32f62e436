# capture: VSS shadow (Win32_ShadowCopy, mocked with its documented
# return codes), the shadow link (created by the mocked mklink as a real
# directory symlink, removed by the script's real code), robocopy (mocked,
# writing a Unicode log shaped like robocopy's, exit codes 1, 8 and 16),
# icacls /save (mocked) and restic (mocked for the flow; real restic 0.14
# for the wrapper, including a real unreadable file).

BeforeAll {
  . $PSScriptRoot/helpers/Load.ps1 -Script capture
  $script:Base = Join-Path ([System.IO.Path]::GetTempPath()) ('rubicon-capture-' + [guid]::NewGuid())
  $script:Source = Join-Path $script:Base 'EHR/X'
  $script:Work = Join-Path $script:Base 'work'
  $script:Dest = Join-Path $script:Base 'vault/run1/X'
  $script:ShadowTarget = Join-Path $script:Base 'shadow-device'
  foreach ($d in $script:Source, (Join-Path $script:Source 'db'), $script:Work, $script:ShadowTarget) { $null = New-Item -ItemType Directory -Path $d -Force }
  [System.IO.File]::WriteAllText((Join-Path $script:Source 'db/ehr.mdf'), 'patient rows')
  [System.IO.File]::WriteAllText((Join-Path $script:ShadowTarget 'inside-the-shadow.txt'), 'must survive the link removal')
  $script:Pw = Join-Path $script:Base 'restic.pw'
  [System.IO.File]::WriteAllText($script:Pw, 'test-only-password')

  function Use-FakeWindows {
    param([uint32]$VssReturn = 0, [int]$RobocopyExit = 1, [object[]]$RobocopyErrors = @(), [int]$IcaclsExit = 0)
    $script:Shadows = @{}
    $script:VssReturn = $VssReturn
    Mock Invoke-CimMethod -ParameterFilter { $ClassName -eq 'Win32_ShadowCopy' -and $MethodName -eq 'Create' } {
      if ($script:VssReturn -ne 0) { return (New-FakeShadowCreateResult -ReturnValue $script:VssReturn -ShadowID '') }
      $id = '{' + [guid]::NewGuid().ToString().ToUpperInvariant() + '}'
      $script:Shadows[$id] = New-FakeWin32ShadowCopy -ID $id -Number 12
      $script:LastVolume = $Arguments.Volume
      $script:LastContext = $Arguments.Context
      New-FakeShadowCreateResult -ReturnValue 0 -ShadowID $id
    }
    Mock Get-CimInstance -ParameterFilter { $ClassName -eq 'Win32_ShadowCopy' } {
      $id = ([regex]::Match($Filter, "ID='([^']+)'")).Groups[1].Value
      if ($script:Shadows.ContainsKey($id)) { $script:Shadows[$id] }
    }
    Mock Remove-CimInstance { $script:Shadows.Remove([string]$InputObject.ID) }
    Mock cmd.exe {
      # mklink /d <link> <DeviceObject>\ : a real directory symlink here
      $Arguments[0..2] | Should -Be @('/c', 'mklink', '/d')
      $Arguments[4] | Should -BeLike '\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopy*\'
      $null = New-Item -ItemType SymbolicLink -Path $Arguments[3] -Target $script:ShadowTarget
      $global:LASTEXITCODE = 0
    }
    $script:RobocopyExit = $RobocopyExit
    $script:RobocopyErrors = $RobocopyErrors
    Mock robocopy { Write-RobocopyLog -Arguments $Arguments -Errors $script:RobocopyErrors; $global:LASTEXITCODE = $script:RobocopyExit }
    $script:IcaclsExit = $IcaclsExit
    Mock icacls {
      Write-IcaclsSaveFile -Path $Arguments[2] -Root 'X'
      'Successfully processed 3 files; Failed processing {0} files' -f [int]($script:IcaclsExit -ne 0)
      $global:LASTEXITCODE = $script:IcaclsExit
    }
    Mock restic {
      '{"message_type":"status","percent_done":0.5,"total_files":1,"total_bytes":12}'
      '{"message_type":"summary","files_new":1,"files_changed":0,"files_unmodified":0,"dirs_new":2,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":1,"tree_blobs":3,"data_added":1075,"total_files_processed":1,"total_bytes_processed":12,"total_duration":0.21,"snapshot_id":"5cf50295"}'
      $global:LASTEXITCODE = 0
    }
  }
  function Get-CaptureArgs {
    param([hashtable]$Extra = @{})
    $a = @{ key = 'run1.capture.X'; source = $script:Source; workDir = $script:Work; robocopy = @{ destination = $script:Dest }; restic = @{ repository = 'azure:vault:/restic'; passwordFile = $script:Pw; tags = @('rubicon', 'run1') }; acl = @{ savePath = (Join-Path $script:Base 'vault/run1/X.acl') } }
    foreach ($k in $Extra.Keys) { $a[$k] = $Extra[$k] }
    return $a
  }
}

AfterAll { Remove-Item -LiteralPath $script:Base -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'capture' {
  It 'copies from a VSS shadow with robocopy, backs up with restic, saves the ACLs, and removes the shadow' {
    Use-FakeWindows
    $r = Invoke-TestScript -Arguments (Get-CaptureArgs)
    $r.ExitCode | Should -Be 0
    $d = $r.Result.data
    $script:LastVolume | Should -Be ([System.IO.Path]::GetPathRoot($script:Source))
    $script:LastContext | Should -Be 'ClientAccessible'
    $d.shadow.deviceObject | Should -Be '\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopy12'
    $d.shadow.deleted | Should -BeTrue
    $d.cleanup.linkRemoved | Should -BeTrue
    $script:Shadows.Count | Should -Be 0
    Test-Path -LiteralPath $d.shadow.link | Should -BeFalse
    Test-Path -LiteralPath (Join-Path $script:Work 'run1.capture.X.shadow.json') | Should -BeFalse
    Test-Path -LiteralPath (Join-Path $script:ShadowTarget 'inside-the-shadow.txt') | Should -BeTrue
    $d.robocopy.exitCode | Should -Be 1
    $d.robocopy.bits | Should -Be @('copied')
    $d.robocopy.failed | Should -BeFalse
    $d.restic.snapshotId | Should -Be '5cf50295'
    $d.restic.complete | Should -BeTrue
    $d.acl.entries | Should -Be 3
    $d.acl.sha256 | Should -Match '^[0-9a-f]{64}$'
  }
  It 'runs robocopy from inside the shadow with the mirror, backup-mode and security flags' {
    Use-FakeWindows
    $null = Invoke-TestScript -Arguments (Get-CaptureArgs)
    Should -Invoke robocopy -Times 1 -Exactly -ParameterFilter {
      $Arguments[0] -eq [System.IO.Path]::Combine((Join-Path $script:Work 'run1.capture.X.shadow'), $script:Source.Substring([System.IO.Path]::GetPathRoot($script:Source).Length)) -and
      $Arguments[1] -eq $script:Dest -and
      (@('/MIR', '/B', '/COPY:DATSO', '/DCOPY:DAT', '/XJ', '/R:2', '/W:1') | Where-Object { $Arguments -notcontains $_ }).Count -eq 0 -and
      @($Arguments | Where-Object { $_ -like '/UNILOG:*' }).Count -eq 1
    }
    Should -Invoke restic -Times 1 -Exactly -ParameterFilter { $args -contains '--use-fs-snapshot' -and $args -contains '--json' -and $args[-1] -eq $script:Source }
  }
  It 'fails with CAPTURE_INCOMPLETE naming each file robocopy could not copy (exit 8), and still removes the shadow' {
    Use-FakeWindows -RobocopyExit 9 -RobocopyErrors @(
      @{ Code = 32; Action = 'Copying File'; Relative = 'db\ehr.mdf'; Message = 'The process cannot access the file because it is being used by another process.' },
      @{ Code = 5; Action = 'Copying File'; Relative = 'db\audit.log'; Message = 'Access is denied.' }
    )
    $r = Invoke-TestScript -Arguments (Get-CaptureArgs)
    $r.ExitCode | Should -Be 1
    $r.Result.error.code | Should -Be 'CAPTURE_INCOMPLETE'
    $r.Result.error.message | Should -BeLike '*robocopy (exit 9, 2 file errors)*'
    $rc = $r.Result.error.details.robocopy
    $rc.bits | Should -Be @('copied', 'failed')
    @($rc.errors | ForEach-Object { $_.relativePath }) | Should -Be @('db/ehr.mdf', 'db/audit.log')
    $rc.errors[0].code | Should -Be 32
    $rc.errors[0].attempts | Should -Be 3
    $rc.errors[0].message | Should -BeLike '*being used by another process*'
    $rc.errors[1].code | Should -Be 5
    $r.Result.error.details.restic.complete | Should -BeTrue
    $r.Result.error.details.shadow.deleted | Should -BeTrue
    $script:Shadows.Count | Should -Be 0
  }
  It 'fails with CAPTURE_INCOMPLETE on a fatal robocopy error (exit 16)' {
    Use-FakeWindows -RobocopyExit 16
    Mock robocopy {
      $log = ($Arguments | Where-Object { $_ -like '/UNILOG:*' }).Substring(8)
      $text = "`r`n2026/11/30 22:00:00 ERROR 53 (0x00000035) Accessing Destination Directory \\vault\share\run1\X\`r`nThe network path was not found.`r`n"
      [System.IO.File]::WriteAllText($log, $text, (New-Object System.Text.UnicodeEncoding $false, $true))
      $global:LASTEXITCODE = 16
    }
    $r = Invoke-TestScript -Arguments (Get-CaptureArgs)
    $r.Result.error.code | Should -Be 'CAPTURE_INCOMPLETE'
    $r.Result.error.details.robocopy.bits | Should -Be @('fatal')
    $r.Result.error.details.robocopy.errors[0].code | Should -Be 53
    $r.Result.error.details.robocopy.errors[0].path | Should -Be '\\vault\share\run1\X\'
  }
  It 'fails with VSS_CREATE_FAILED, retryable, when another shadow copy is in progress (9), copying nothing' {
    Use-FakeWindows -VssReturn 9
    $r = Invoke-TestScript -Arguments (Get-CaptureArgs)
    $r.ExitCode | Should -Be 1
    $r.Result.error.code | Should -Be 'VSS_CREATE_FAILED'
    $r.Result.error.details.returnValue | Should -Be 9
    $r.Result.error.details.meaning | Should -Be 'another shadow copy operation is already in progress'
    $r.Result.error.details.retryable | Should -BeTrue
    Should -Invoke robocopy -Times 0 -Exactly
    Should -Invoke restic -Times 0 -Exactly
    Test-Path -LiteralPath (Join-Path $script:Work 'run1.capture.X.shadow.json') | Should -BeFalse
  }
  It 'fails with VSS_CREATE_FAILED, not retryable, when a provider vetoes (10)' {
    Use-FakeWindows -VssReturn 10
    $r = Invoke-TestScript -Arguments (Get-CaptureArgs)
    $r.Result.error.code | Should -Be 'VSS_CREATE_FAILED'
    $r.Result.error.details.meaning | Should -Be 'a shadow copy provider vetoed the operation'
    $r.Result.error.details.retryable | Should -BeFalse
  }
  It 'removes the link and the shadow even when robocopy itself cannot run' {
    Use-FakeWindows
    Mock robocopy { throw 'robocopy crashed' }
    $r = Invoke-TestScript -Arguments (Get-CaptureArgs)
    $r.ExitCode | Should -Be 1
    $script:Shadows.Count | Should -Be 0
    Test-Path -LiteralPath (Join-Path $script:Work 'run1.capture.X.shadow') | Should -BeFalse
  }
  It 'removes a shadow left by an earlier run with the same key before taking a new one' {
    Use-FakeWindows
    $old = '{00000000-0000-4000-8000-0000000000AA}'
    $script:Shadows[$old] = New-FakeWin32ShadowCopy -ID $old -Number 3
    $link = Join-Path $script:Work 'run1.capture.X.shadow'
    $null = New-Item -ItemType SymbolicLink -Path $link -Target $script:ShadowTarget
    [System.IO.File]::WriteAllText((Join-Path $script:Work 'run1.capture.X.shadow.json'), ('{"shadowId":"' + $old + '","link":' + (ConvertTo-RubiconJsonString $link) + '}'))
    $r = Invoke-TestScript -Arguments (Get-CaptureArgs)
    $r.ExitCode | Should -Be 0
    $r.Result.data.staleShadowRemoved | Should -Be $old
    $script:Shadows.Count | Should -Be 0
  }
  It 'fails with CAPTURE_INCOMPLETE when icacls /save fails' {
    Use-FakeWindows -IcaclsExit 2
    $r = Invoke-TestScript -Arguments (Get-CaptureArgs)
    $r.Result.error.code | Should -Be 'CAPTURE_INCOMPLETE'
    $r.Result.error.message | Should -BeLike '*icacls /save (exit 2)*'
    $r.Result.error.details.acl.failedCount | Should -Be 1
  }
  It 'hands restic the options, repository file, parent and exclusions it was given, with its own VSS snapshot' {
    Use-FakeWindows
    $rs = @{ repositoryFile = (Join-Path $script:Base 'repo.location'); passwordFile = $script:Pw; options = @('sftp.command=ssh -l v -s h sftp'); parent = ('ab' * 32); exclude = @('db/tmp'); host = 'ehr-server'; tags = @('rubicon') }
    # restic is a real program here (no stub with $Arguments): this mock keeps what it was given.
    Mock restic {
      $script:ResticArgs = @($args)
      '{"message_type":"summary","files_new":1,"files_changed":0,"files_unmodified":0,"dirs_new":2,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":1,"tree_blobs":3,"data_added":1075,"total_files_processed":1,"total_bytes_processed":12,"total_duration":0.21,"snapshot_id":"5cf50295"}'
      $global:LASTEXITCODE = 0
    }
    $r = Invoke-TestScript -Arguments (Get-CaptureArgs @{ restic = $rs })
    $r.ExitCode | Should -Be 0
    $a = $script:ResticArgs
    $a[0..2] | Should -Be @('--option', 'sftp.command=ssh -l v -s h sftp', 'backup')
    ($a -join ' ') | Should -BeLike ('*--repository-file ' + (Join-Path $script:Base 'repo.location') + '*')
    ($a -join ' ') | Should -BeLike ('*--parent ' + ('ab' * 32) + '*')
    ($a -join ' ') | Should -BeLike ('*--exclude ' + [System.IO.Path]::Combine($script:Source, 'db' + [System.IO.Path]::DirectorySeparatorChar + 'tmp') + '*')
    $a | Should -Contain '--use-fs-snapshot'
    $a[-1] | Should -Be $script:Source
    $bad = Invoke-TestScript -Arguments (Get-CaptureArgs @{ restic = @{ repository = 'r'; passwordFile = $script:Pw; parent = 'latest' } })
    $bad.Result.error.code | Should -Be 'ARGS_INVALID'
    $bad = Invoke-TestScript -Arguments (Get-CaptureArgs @{ restic = @{ repository = 'r'; passwordFile = $script:Pw; options = @('--no-lock') } })
    $bad.Result.error.code | Should -Be 'ARGS_INVALID'
    # both refused before any shadow was made
    Should -Invoke Invoke-CimMethod -Times 1 -Exactly -ParameterFilter { $ClassName -eq 'Win32_ShadowCopy' }
  }
  It 'maps the share with New-SmbMapping in-process (the password never on a command line), deletes the password file, copies without security into it and removes the mapping' {
    Use-FakeWindows
    $pwFile = Join-Path $script:Base 'smb-password'
    [System.IO.File]::WriteAllText($pwFile, "s3cret-SMB-pw`r`n")
    $script:Mapped = @()
    $script:NativeArgs = @()
    Mock New-SmbMapping { $script:Mapped += [pscustomobject]@{ RemotePath = $RemotePath; UserName = $UserName; Password = $Password; Persistent = $Persistent } }
    Mock Get-SmbMapping { }
    Mock Remove-SmbMapping { $script:Unmapped = $RemotePath }
    Mock robocopy { $script:NativeArgs += , @($Arguments); Write-RobocopyLog -Arguments $Arguments -Errors @(); $global:LASTEXITCODE = 1 }
    Mock icacls { $script:NativeArgs += , @($Arguments); Write-IcaclsSaveFile -Path $Arguments[2] -Root 'X'; 'Successfully processed 3 files; Failed processing 0 files'; $global:LASTEXITCODE = 0 }
    $a = Get-CaptureArgs @{ restic = $null; robocopy = @{ destination = '\\nas01\rubicon\trees\x.partial'; copy = 'DAT'; share = @{ root = '\\nas01\rubicon'; user = 'rubicon'; passwordFile = $pwFile } } }
    $r = Invoke-TestScript -Arguments $a
    $r.ExitCode | Should -Be 0
    $script:Mapped.Count | Should -Be 1
    $script:Mapped[0].RemotePath | Should -Be '\\nas01\rubicon'
    $script:Mapped[0].UserName | Should -Be 'rubicon'
    $script:Mapped[0].Password | Should -BeExactly 's3cret-SMB-pw'
    $script:Mapped[0].Persistent | Should -BeFalse
    $script:Unmapped | Should -Be '\\nas01\rubicon'
    Test-Path -LiteralPath $pwFile | Should -BeFalse
    $r.Result.data.robocopy.share.disconnected | Should -BeTrue
    # No program saw the password, and the result does not carry it.
    foreach ($argv in $script:NativeArgs) { ($argv -join ' ') | Should -Not -BeLike '*s3cret-SMB-pw*' }
    $r.Text | Should -Not -BeLike '*s3cret-SMB-pw*'
    $script:NativeArgs[0] | Should -Contain '/COPY:DAT'
    $script:NativeArgs[0] | Should -Not -Contain '/COPY:DATSO'
  }
  It 'fails with SHARE_CONNECT_FAILED, before any shadow, when the share refuses the credentials (the message without the password)' {
    Use-FakeWindows
    $pwFile = Join-Path $script:Base 'smb-password-bad'
    [System.IO.File]::WriteAllText($pwFile, 'wrong-pw')
    Mock Get-SmbMapping { }
    Mock New-SmbMapping { throw [System.ComponentModel.Win32Exception]::new(1326, 'The user name or password is incorrect.') }
    Mock Remove-SmbMapping { }
    $r = Invoke-TestScript -Arguments (Get-CaptureArgs @{ restic = $null; robocopy = @{ destination = '\\nas01\rubicon\trees\x.partial'; share = @{ root = '\\nas01\rubicon'; user = 'rubicon'; passwordFile = $pwFile } } })
    $r.ExitCode | Should -Be 1
    $r.Result.error.code | Should -Be 'SHARE_CONNECT_FAILED'
    $r.Result.error.message | Should -BeLike '*\\nas01\rubicon as rubicon*password is incorrect*'
    $r.Text | Should -Not -BeLike '*wrong-pw*'
    Test-Path -LiteralPath $pwFile | Should -BeFalse
    Should -Invoke Invoke-CimMethod -Times 0 -Exactly
  }
  It 'removes the mapping even when robocopy fails (exit 16)' {
    Use-FakeWindows -RobocopyExit 16
    $pwFile = Join-Path $script:Base 'smb-password-3'
    [System.IO.File]::WriteAllText($pwFile, 'pw')
    $script:Unmapped = $null
    Mock Get-SmbMapping { }
    Mock New-SmbMapping { }
    Mock Remove-SmbMapping { $script:Unmapped = $RemotePath }
    $r = Invoke-TestScript -Arguments (Get-CaptureArgs @{ restic = $null; robocopy = @{ destination = '\\nas01\rubicon\trees\x.partial'; share = @{ root = '\\nas01\rubicon'; user = 'rubicon'; passwordFile = $pwFile } } })
    $r.Result.error.code | Should -Be 'CAPTURE_INCOMPLETE'
    $r.Result.error.details.robocopy.share.disconnected | Should -BeTrue
    $script:Unmapped | Should -Be '\\nas01\rubicon'
  }
  It 'refuses <Why> (<Code>) before creating any shadow' -ForEach @(
    @{ Why = 'a destination inside the source'; Extra = @{ robocopy = @{ destination = '__SOURCE__/mirror' } }; Code = 'ARGS_INVALID' },
    @{ Why = 'a destination that is a share root (/MIR would empty it)'; Extra = @{ robocopy = @{ destination = '\\vault\share' } }; Code = 'ARGS_INVALID' },
    @{ Why = 'a destination outside the share it names'; Extra = @{ robocopy = @{ destination = '\\other\share\trees\x'; share = @{ root = '\\nas01\rubicon'; user = 'u'; passwordFile = 'p' } } }; Code = 'ARGS_INVALID' },
    @{ Why = 'a robocopy copy flag set other than DATSO, DATS, DAT'; Extra = @{ robocopy = @{ destination = '\\nas01\rubicon\trees\x'; copy = 'DATSOU' } }; Code = 'ARGS_INVALID' },
    @{ Why = 'neither robocopy nor restic'; Extra = @{ robocopy = $null; restic = $null }; Code = 'ARGS_INVALID' },
    @{ Why = 'a key with a path in it'; Extra = @{ key = '..\evil' }; Code = 'ARGS_INVALID' },
    @{ Why = 'a relative source'; Extra = @{ source = 'EHR\X' }; Code = 'ARGS_INVALID' },
    @{ Why = 'a source that does not exist'; Extra = @{ source = '/nonexistent/rubicon/X' }; Code = 'PATH_NOT_FOUND' },
    @{ Why = 'a restic parent that is not a snapshot id'; Extra = @{ restic = @{ repository = 'r'; passwordFile = 'p'; parent = 'latest' } }; Code = 'ARGS_INVALID' },
    @{ Why = 'a restic option that is a flag, not name=value'; Extra = @{ restic = @{ repository = 'r'; passwordFile = 'p'; options = @('--no-lock') } }; Code = 'ARGS_INVALID' }
  ) {
    Use-FakeWindows
    $x = @{}
    foreach ($k in $Extra.Keys) { $v = $Extra[$k]; if ($v -is [hashtable] -and $v.ContainsKey('destination') -and $v.destination -like '__SOURCE__*') { $v = @{ destination = $v.destination.Replace('__SOURCE__', $script:Source) } }; $x[$k] = $v }
    $r = Invoke-TestScript -Arguments (Get-CaptureArgs $x)
    $r.ExitCode | Should -Be 1
    $r.Result.error.code | Should -Be $Code
    Should -Invoke Invoke-CimMethod -Times 0 -Exactly
  }
}

Describe 'restic backup (real restic)' {
  BeforeAll {
    $script:Repo = Join-Path $script:Base 'restic-repo'
    $script:ResticSrc = Join-Path $script:Base 'restic-src'
    $null = New-Item -ItemType Directory -Path (Join-Path $script:ResticSrc 'sub') -Force
    [System.IO.File]::WriteAllText((Join-Path $script:ResticSrc 'a.txt'), 'alpha')
    [System.IO.File]::WriteAllText((Join-Path $script:ResticSrc 'sub/secret.db'), 'unreadable for a reader without DAC override')
    $init = Invoke-RubiconNative -FilePath 'restic' -ArgumentList @('init', '--repo', $script:Repo, '--password-file', $script:Pw)
    if ($init.exitCode -ne 0) { throw ('restic init failed: ' + ($init.output -join ' ')) }
  }
  It 'parses the summary of a real backup: exit 0, complete, a snapshot id' {
    $r = Invoke-RubiconResticBackup -Source $script:ResticSrc -Repository $script:Repo -PasswordFile $script:Pw -Tags @('rubicon')
    $r.exitCode | Should -Be 0
    $r.failed | Should -BeFalse
    $r.complete | Should -BeTrue
    $r.snapshotId | Should -Match '^[0-9a-f]{8,64}$'
    $r.summary.files_new | Should -Be 2
    $r.summary.total_bytes_processed | Should -BeGreaterThan 0
  }
  It 'names the file a real restic could not read (exit 3: snapshot made, incomplete)' {
    # root reads everything; without CAP_DAC_OVERRIDE a mode-000 file is unreadable.
    $wrapper = Join-Path $script:Base 'restic-no-dac'
    [System.IO.File]::WriteAllText($wrapper, "#!/bin/sh`nexec setpriv --bounding-set=-dac_override,-dac_read_search restic `"`$@`"`n")
    & chmod 755 $wrapper
    & chmod 000 (Join-Path $script:ResticSrc 'sub/secret.db')
    try {
      $r = Invoke-RubiconResticBackup -Source $script:ResticSrc -Repository $script:Repo -PasswordFile $script:Pw -ResticPath $wrapper
    } finally { & chmod 644 (Join-Path $script:ResticSrc 'sub/secret.db') }
    $r.exitCode | Should -Be 3
    $r.failed | Should -BeTrue
    $r.complete | Should -BeFalse
    $r.snapshotId | Should -Not -BeNullOrEmpty
    @($r.errors | Where-Object { $_.item -like '*sub/secret.db' }).Count | Should -Be 1
    ($r.errors | Where-Object { $_.item -like '*sub/secret.db' }).message | Should -BeLike 'open *'
  }
  It 'takes the repository from a file, a parent snapshot and exclusions, and passes -o options before the command (real restic)' {
    $repoFile = Join-Path $script:Base 'restic-repo.location'
    [System.IO.File]::WriteAllText($repoFile, $script:Repo + "`n")
    $first = Invoke-RubiconResticBackup -Source $script:ResticSrc -RepositoryFile $repoFile -PasswordFile $script:Pw -Exclude @((Join-Path $script:ResticSrc 'sub/secret.db'))
    $first.complete | Should -BeTrue
    $first.summary.total_files_processed | Should -Be 1
    # restic accepts -o for a backend it does not use; the parent makes the second backup a delta (nothing new).
    $second = Invoke-RubiconResticBackup -Source $script:ResticSrc -RepositoryFile $repoFile -PasswordFile $script:Pw -Parent $first.snapshotId -Exclude @((Join-Path $script:ResticSrc 'sub/secret.db')) -Options @('sftp.command=ssh -F /dev/null -l vault -s host sftp')
    $second.complete | Should -BeTrue
    $second.summary.files_unmodified | Should -Be 1
    $second.summary.files_new | Should -Be 0
  }
  It 'refuses a restic option that is not name=value on one line (ARGS_INVALID)' {
    { Invoke-RubiconResticBackup -Source $script:ResticSrc -Repository $script:Repo -PasswordFile $script:Pw -Options @('--no-lock') } | Should -Throw -ExpectedMessage '*name=value*'
  }
  It 'fails without a snapshot when the repository cannot be opened (exit 1)' {
    $r = Invoke-RubiconResticBackup -Source $script:ResticSrc -Repository (Join-Path $script:Base 'no-repo') -PasswordFile $script:Pw
    $r.exitCode | Should -Be 1
    $r.failed | Should -BeTrue
    $r.snapshotId | Should -BeNullOrEmpty
  }
}
