# inventory of a simulated EHR server: every Windows-only source mocked
# with Windows-shaped outputs (helpers/WindowsShapes.ps1 cites each page);
# certificates are real X509Certificate2 objects; the hosts file is a real
# file. Checks the item shapes, the data folders discovery finds (X, Y and Z
# of the story), what is left out as secret, and that a failing or missing
# section does not fail the inventory.

BeforeAll {
  . $PSScriptRoot/helpers/Load.ps1 -Script inventory
  $script:OldSystemRoot = $env:SystemRoot
  $env:SystemRoot = 'C:\Windows'
  $script:Base = Join-Path ([System.IO.Path]::GetTempPath()) ('rubicon-inventory-' + [guid]::NewGuid())
  $null = New-Item -ItemType Directory -Path $script:Base
  $script:Hosts = Join-Path $script:Base 'hosts'
  [System.IO.File]::WriteAllText($script:Hosts, "# Copyright (c) 1993-2009 Microsoft Corp.`r`n#`r`n#      102.54.94.97     rhino.acme.com`r`n`r`n127.0.0.1       localhost`r`n10.0.4.20`tlab-gateway lab   # the lab's HL7 gateway`r`n")

  $rsa = [System.Security.Cryptography.RSA]::Create(2048)
  $req = [System.Security.Cryptography.X509Certificates.CertificateRequest]::new('CN=ehr.example.test', $rsa, [System.Security.Cryptography.HashAlgorithmName]::SHA256, [System.Security.Cryptography.RSASignaturePadding]::Pkcs1)
  $script:CertWithKey = $req.CreateSelfSigned([DateTimeOffset]::new(2025, 1, 1, 0, 0, 0, [TimeSpan]::Zero), [DateTimeOffset]::new(2027, 1, 1, 0, 0, 0, [TimeSpan]::Zero))
  $req2 = [System.Security.Cryptography.X509Certificates.CertificateRequest]::new('CN=lab-client', $rsa, [System.Security.Cryptography.HashAlgorithmName]::SHA256, [System.Security.Cryptography.RSASignaturePadding]::Pkcs1)
  $script:CertNoKey = [System.Security.Cryptography.X509Certificates.X509Certificate2]::new($req2.CreateSelfSigned([DateTimeOffset]::UtcNow.AddDays(-1), [DateTimeOffset]::UtcNow.AddDays(30)).RawData)

  function Use-FakeServer {
    Mock Get-Service { @((New-FakeServiceController -Name 'EHRApp' -ServicesDependedOn @((New-FakeServiceController -Name 'MSSQLSERVER'))), (New-FakeServiceController -Name 'MSSQLSERVER'), (New-FakeServiceController -Name 'Dnscache')) }
    Mock Get-CimInstance -ParameterFilter { $ClassName -eq 'Win32_Service' } {
      New-FakeWin32Service -Name 'EHRApp' -PathName '"D:\EHR\bin\ehrapp.exe" -data D:\EHR\X -config "D:\EHR\conf\app.ini"' -StartName 'EHR\svc-ehr' -DelayedAutoStart $true -ProcessId 4242
      New-FakeWin32Service -Name 'MSSQLSERVER' -PathName '"C:\Program Files\Microsoft SQL Server\MSSQL16.MSSQLSERVER\MSSQL\Binn\sqlservr.exe" -sMSSQLSERVER' -StartName 'NT Service\MSSQLSERVER'
      New-FakeWin32Service -Name 'Dnscache' -PathName 'C:\Windows\system32\svchost.exe -k NetworkService -p' -StartName 'NT AUTHORITY\NetworkService'
    }
    Mock Get-ScheduledTask { (New-FakeScheduledTask -TaskName 'Nightly export' -TaskPath '\Vendor\'), (New-FakeScheduledTask -TaskName 'Lab upload' -TaskPath '\Vendor\'), (New-FakeScheduledTask -TaskName 'ScheduledDefrag' -TaskPath '\Microsoft\Windows\Defrag\') }
    Mock Export-ScheduledTask {
      if ($TaskName -eq 'Nightly export') { New-FakeTaskXml -Command 'D:\EHR\bin\export.exe' -Arguments '/out "D:\EHR\Y\exports" /quiet' -WorkingDirectory 'D:\EHR\bin' }
      else { New-FakeTaskXml -Command 'C:\Scripts\upload.cmd' -UserId 'EHR\svc-lab' -LogonType 'Password' }
    }
    Mock Get-SmbShare { (New-FakeSmbShare -Name 'ADMIN$' -Path 'C:\Windows' -Special $true), (New-FakeSmbShare -Name 'EHRZ' -Path 'D:\EHR\Z' -Description 'EHR exports') }
    Mock Get-SmbShareAccess { New-FakeSmbShareAccess -Name $Name[0] -AccountName 'BUILTIN\Administrators' -AccessRight 'Full'; New-FakeSmbShareAccess -Name $Name[0] -AccountName 'EHR\Clinicians' -AccessRight 'Change' }
    Mock Test-Path -ParameterFilter { $LiteralPath -eq 'D:\EHR\Z' } { $true }
    Mock Get-Acl { [pscustomobject]@{ Access = @((New-FakeFileSystemAccessRule -Identity 'BUILTIN\Administrators' -Rights 'FullControl'), (New-FakeFileSystemAccessRule -Identity ([System.Environment]::MachineName + '\ehrscan'))) } }
    Mock Get-IISSite { New-FakeIisSite -Name 'EHR Portal' -Id 2 -PhysicalPath 'D:\EHR\Web' -Bindings @([pscustomobject]@{ Protocol = 'https'; BindingInformation = '*:443:portal.ehr.example'; CertificateHash = [byte[]](0xAB, 0xCD, 0x01); CertificateStoreName = 'My' }) }
    Mock Get-IISAppPool { (New-FakeIisAppPool -Name 'EHRPortal' -IdentityType 'SpecificUser' -UserName 'EHR\svc-web'), (New-FakeIisAppPool -Name 'DefaultAppPool') }
    Mock Get-OdbcDsn { New-FakeOdbcDsn -Name 'EHRAccess' -DriverName 'Microsoft Access Driver (*.mdb, *.accdb)' -Platform '32-bit' -Attribute ([ordered]@{ DBQ = 'D:\EHR\Access\ehr.mdb'; PWD = 'hunter2'; DriverId = '25' }) }
    Mock Get-RubiconCertificates { $script:CertWithKey; $script:CertNoKey }
    Mock Get-RubiconKeyExportable -ParameterFilter { $Certificate.Thumbprint -eq $script:CertWithKey.Thumbprint } { $false }
    Mock Get-ItemProperty -ParameterFilter { $Path -like '*\Windows\CurrentVersion\Uninstall\*' } {
      if ($Path -like '*WOW6432Node*') { New-FakeUninstallEntry -DisplayName 'EHR Lab Bridge' -DisplayVersion '2.1' -InstallLocation 'C:\Program Files (x86)\LabBridge\' }
      else { New-FakeUninstallEntry -DisplayName 'EHR Server' -DisplayVersion '11.4.2' -InstallLocation 'D:\EHR\'; New-FakeUninstallEntry -DisplayName 'Hidden runtime' -SystemComponent 1; [pscustomobject]@{ PSChildName = 'NoName' } }
    }
    Mock Get-ItemProperty -ParameterFilter { $Path -like '*\Instance Names\SQL' } { [pscustomobject]@{ MSSQLSERVER = 'MSSQL16.MSSQLSERVER'; PSPath = 'Microsoft.PowerShell.Core\Registry::HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Microsoft SQL Server\Instance Names\SQL'; PSChildName = 'SQL'; PSProvider = 'Microsoft.PowerShell.Core\Registry' } }
    Mock Get-ItemProperty -ParameterFilter { $Path -like '*\MSSQL16.MSSQLSERVER\Setup' } { [pscustomobject]@{ Edition = 'Standard Edition'; Version = '16.0.1000.6'; SQLDataRoot = 'D:\SQLData'; SQLPath = 'C:\Program Files\Microsoft SQL Server\MSSQL16.MSSQLSERVER\MSSQL' } }
    Mock Get-Volume { (New-FakeMsftVolume -DriveLetter 'C' -Label 'OS'), (New-FakeMsftVolume -DriveLetter 'D' -Label 'Data' -Size 536870912000 -SizeRemaining 107374182400), (New-TestCim 'MSFT_Volume' ([ordered]@{ DriveLetter = [char]0; FileSystemLabel = 'Recovery'; FileSystem = 'NTFS'; Size = [uint64]524288000; SizeRemaining = [uint64]0 })) }
    Mock Get-LocalUser { (New-FakeLocalUser -Name 'Administrator' -Sid 'S-1-5-21-1-2-3-500' -LastLogon ([datetime]::new(2026, 11, 1, 8, 0, 0, [System.DateTimeKind]::Utc))), (New-FakeLocalUser -Name 'ehrscan' -Sid 'S-1-5-21-1-2-3-1001') }
    Mock Get-LocalGroup { (New-FakeLocalGroup -Name 'Administrators' -Sid 'S-1-5-32-544'), (New-FakeLocalGroup -Name 'EHR Users' -Sid 'S-1-5-21-1-2-3-1002') }
    Mock Get-LocalGroupMember -ParameterFilter { $Group -eq 'Administrators' } { New-FakeLocalPrincipal -Name 'SRV-EHR01\Administrator' -Sid 'S-1-5-21-1-2-3-500' }
    # Get-LocalGroupMember fails on a group with a member whose account was deleted (an orphaned SID).
    Mock Get-LocalGroupMember -ParameterFilter { $Group -eq 'EHR Users' } { throw [System.InvalidOperationException]::new('Failed to compare two elements in the array.') }
    Mock Get-RubiconGroupMembersAdsi { 'ehrscan'; 'S-1-5-21-1-2-3-1107' }
    Mock Get-NetFirewallRule { (New-FakeNetFirewallRule -Name 'EHR-HL7-In' -DisplayName 'EHR HL7 listener'), (New-FakeNetFirewallRule -Name 'CoreNet-DNS-Out' -DisplayName 'Core Networking - DNS' -DisplayGroup 'Core Networking' -Direction 'Outbound') }
    Mock Get-NetFirewallPortFilter { New-FakeNetFirewallPortFilter -Protocol 'TCP' -LocalPort @('2575') }
    Mock Get-NetFirewallApplicationFilter { New-FakeNetFirewallApplicationFilter -Program 'D:\EHR\bin\hl7.exe' }
    Mock Get-RubiconHostsPath { $script:Hosts }
    Mock Get-RubiconMachineEnvironment { [ordered]@{ Path = 'C:\Windows\system32;D:\EHR\bin'; EHR_DATA = 'D:\EHR\X'; EHR_DB_PASSWORD = 'hunter2'; TEMP = 'C:\Windows\TEMP' } }
  }
  Use-FakeServer
  $script:Run = Invoke-TestScript
}

AfterAll {
  $env:SystemRoot = $script:OldSystemRoot
  Remove-Item -LiteralPath $script:Base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'inventory of a simulated EHR server' {
  BeforeAll { $script:S = $script:Run.Result.data.sections }
  It 'succeeds with every section ok' {
    $script:Run.ExitCode | Should -Be 0
    foreach ($p in $script:S.PSObject.Properties) { $p.Value.status | Should -Be 'ok' -Because $p.Name }
    @($script:S.PSObject.Properties).Count | Should -Be 15
  }
  It 'lists services with start mode, account, binary and dependencies' {
    $app = $script:S.services.items | Where-Object { $_.name -eq 'EHRApp' }
    $app.startMode | Should -Be 'Auto'
    $app.delayedAutoStart | Should -BeTrue
    $app.binaryPath | Should -Be 'D:\EHR\bin\ehrapp.exe'
    $app.account | Should -Be 'EHR\svc-ehr'
    $app.dependsOn | Should -Be @('MSSQLSERVER')
    $app.processId | Should -Be 4242
    $app.needsPerson | Should -BeTrue
    ($script:S.services.items | Where-Object { $_.name -eq 'MSSQLSERVER' }).builtInAccount | Should -BeTrue
  }
  It 'lists scheduled tasks outside \Microsoft\ with actions, principal and triggers from their XML' {
    @($script:S.scheduledTasks.items | ForEach-Object { $_.name }) | Should -Be @('Nightly export', 'Lab upload')
    $t = $script:S.scheduledTasks.items[0]
    $t.actions[0].execute | Should -Be 'D:\EHR\bin\export.exe'
    $t.actions[0].arguments | Should -Be '/out "D:\EHR\Y\exports" /quiet'
    $t.principal.userId | Should -Be 'S-1-5-18'
    $t.triggers[0].type | Should -Be 'CalendarTrigger'
    $t.triggers[0].startBoundary | Should -Be '2024-01-01T02:00:00'
    $t.xml | Should -BeLike '*<Command>D:\EHR\bin\export.exe</Command>*'
    $script:S.scheduledTasks.items[1].principal.logonType | Should -Be 'Password'
    $script:S.scheduledTasks.items[1].needsPerson | Should -BeTrue
  }
  It 'lists shares (not the administrative ones) with share and NTFS permissions, flagging local accounts' {
    @($script:S.shares.items | ForEach-Object { $_.name }) | Should -Be @('EHRZ')
    $z = $script:S.shares.items[0]
    $z.access[1].accountName | Should -Be 'EHR\Clinicians'
    $z.access[1].accessRight | Should -Be 'Change'
    $z.pathExists | Should -BeTrue
    ($z.ntfs | Where-Object { $_.isLocalAccount }).identity | Should -Be ([System.Environment]::MachineName + '\ehrscan')
    $z.needsPerson | Should -BeTrue
  }
  It 'lists IIS sites with bindings and physical paths, and app pools without their passwords' {
    $site = $script:S.iisSites.items[0]
    $site.bindings[0].bindingInformation | Should -Be '*:443:portal.ehr.example'
    $site.bindings[0].certificateHash | Should -Be 'ABCD01'
    $site.applications[0].virtualDirectories[0].physicalPath | Should -Be 'D:\EHR\Web'
    ($script:S.iisAppPools.items | Where-Object { $_.name -eq 'EHRPortal' }).needsPerson | Should -BeTrue
    $script:Run.Text | Should -Not -Match 'must-never-be-read'
  }
  It 'lists ODBC DSNs with their attributes, the password left out' {
    $dsn = $script:S.odbcDsns.items[0]
    $dsn.platform | Should -Be '32-bit'
    $dsn.attributes.DBQ | Should -Be 'D:\EHR\Access\ehr.mdb'
    $dsn.attributes.PWD | Should -BeNullOrEmpty
    $dsn.redacted | Should -Be @('PWD')
    $script:Run.Text | Should -Not -Match 'hunter2'
  }
  It 'lists certificates, flagging a private key that cannot be exported' {
    $c = $script:S.certificates.items | Where-Object { $_.thumbprint -eq $script:CertWithKey.Thumbprint }
    $c.subject | Should -Be 'CN=ehr.example.test'
    $c.notAfter | Should -Be '2027-01-01T00:00:00.000Z'
    $c.hasPrivateKey | Should -BeTrue
    $c.exportable | Should -BeFalse
    $c.needsPerson | Should -BeTrue
    ($script:S.certificates.items | Where-Object { $_.thumbprint -eq $script:CertNoKey.Thumbprint }).hasPrivateKey | Should -BeFalse
  }
  It 'lists programs from both Uninstall keys, without system components or nameless entries' {
    @($script:S.programs.items | ForEach-Object { $_.name + '|' + $_.scope }) | Should -Be @('EHR Server|64-bit', 'EHR Lab Bridge|32-bit')
  }
  It 'lists volumes with a drive letter and their free space' {
    @($script:S.volumes.items | ForEach-Object { $_.driveLetter }) | Should -Be @('C', 'D')
    $script:S.volumes.items[1].sizeRemaining | Should -Be 107374182400
    $script:S.volumes.items[1].fileSystem | Should -Be 'NTFS'
  }
  It 'lists SQL Server instances from the registry' {
    $i = $script:S.sqlInstances.items[0]
    $i.name | Should -Be 'MSSQLSERVER'
    $i.id | Should -Be 'MSSQL16.MSSQLSERVER'
    $i.dataRoot | Should -Be 'D:\SQLData'
  }
  It 'lists local users and groups, falling back to ADSI for a group Get-LocalGroupMember cannot read' {
    ($script:S.localUsers.items | Where-Object { $_.name -eq 'Administrator' }).lastLogon | Should -Be '2026-11-01T08:00:00.000Z'
    $g = $script:S.localGroups.items | Where-Object { $_.name -eq 'EHR Users' }
    $g.membersVia | Should -Be 'ADSI'
    @($g.members | ForEach-Object { $_.name }) | Should -Be @('ehrscan', 'S-1-5-21-1-2-3-1107')
    $g.membersError | Should -BeLike '*compare two elements*'
    ($script:S.localGroups.items | Where-Object { $_.name -eq 'Administrators' }).membersVia | Should -Be 'Get-LocalGroupMember'
  }
  It 'lists enabled firewall rules, with ports and program for the custom ones' {
    $hl7 = $script:S.firewallRules.items | Where-Object { $_.name -eq 'EHR-HL7-In' }
    $hl7.custom | Should -BeTrue
    $hl7.localPort | Should -Be @('2575')
    $hl7.program | Should -Be 'D:\EHR\bin\hl7.exe'
    ($script:S.firewallRules.items | Where-Object { $_.name -eq 'CoreNet-DNS-Out' }).custom | Should -BeFalse
  }
  It 'reads the hosts file, comments left out' {
    @($script:S.hostsFile.items | ForEach-Object { $_.address + '=' + ($_.names -join ',') }) | Should -Be @('127.0.0.1=localhost', '10.0.4.20=lab-gateway,lab')
  }
  It 'lists machine environment variables, a secret-looking one without its value' {
    $e = $script:S.environment.items
    ($e | Where-Object { $_.name -eq 'EHR_DATA' }).value | Should -Be 'D:\EHR\X'
    $pw = $e | Where-Object { $_.name -eq 'EHR_DB_PASSWORD' }
    $pw.redacted | Should -BeTrue
    $pw.value | Should -BeNullOrEmpty
    @($e | ForEach-Object { $_.name }) | Should -Be @('EHR_DATA', 'EHR_DB_PASSWORD', 'Path', 'TEMP')
  }
  It 'finds the data folders that services, tasks, shares, IIS, ODBC and SQL Server name, outside %SystemRoot%' {
    $paths = @($script:Run.Result.data.referencedFolders | ForEach-Object { $_.path })
    foreach ($want in 'D:\EHR\X', 'D:\EHR\Y\exports', 'D:\EHR\Z', 'D:\EHR\Web', 'D:\EHR\Access', 'D:\SQLData', 'D:\EHR\bin', 'D:\EHR\conf') { $paths | Should -Contain $want }
    @($paths | Where-Object { $_ -like 'C:\Windows*' }).Count | Should -Be 0
    @($paths | Where-Object { $_.Contains('/') }).Count | Should -Be 0
    @($paths | Select-Object -Unique).Count | Should -Be $paths.Count
    $x = $script:Run.Result.data.referencedFolders | Where-Object { $_.path -eq 'D:\EHR\X' }
    $x.references[0].kind | Should -Be 'service'
    $x.references[0].name | Should -Be 'EHRApp'
    $x.references[0].via | Should -Be 'argument'
    (($script:Run.Result.data.referencedFolders | Where-Object { $_.path -eq 'D:\EHR\bin' }).references | ForEach-Object { $_.kind } | Sort-Object -Unique) | Should -Be @('scheduledTask', 'service')
  }
}

Describe 'inventory sections that fail' {
  It 'reports IIS as unavailable when its module is not installed, and the rest ok' {
    Use-FakeServer
    Mock Assert-RubiconCommand -ParameterFilter { $Names -contains 'Get-IISSite' } { throw (New-RubiconError 'COMMAND_UNAVAILABLE' 'Get-IISSite is not available on this server') }
    $r = Invoke-TestScript -Arguments @{ sections = @('iisSites', 'volumes') }
    $r.ExitCode | Should -Be 0
    $r.Result.data.sections.iisSites.status | Should -Be 'unavailable'
    $r.Result.data.sections.iisSites.error.code | Should -Be 'COMMAND_UNAVAILABLE'
    $r.Result.data.sections.iisSites.items.Count | Should -Be 0
    $r.Result.data.sections.volumes.status | Should -Be 'ok'
    @($r.Result.data.sections.PSObject.Properties).Count | Should -Be 2
  }
  It 'reports a section Windows refuses (access denied) as failed with its code' {
    Use-FakeServer
    Mock Get-SmbShare { throw [System.UnauthorizedAccessException]::new('Access denied') }
    $r = Invoke-TestScript -Arguments @{ sections = @('shares') }
    $r.Result.data.sections.shares.status | Should -Be 'failed'
    $r.Result.data.sections.shares.error.code | Should -Be 'ACCESS_DENIED'
  }
  It 'says a real missing command is COMMAND_UNAVAILABLE' {
    { Assert-RubiconCommand @('Get-RubiconNoSuchCmdlet') } | Should -Throw -ExpectedMessage '*not available on this server*'
  }
  It 'refuses an unknown section (ARGS_INVALID)' {
    $r = Invoke-TestScript -Arguments @{ sections = @('services', 'passwords') }
    $r.ExitCode | Should -Be 1
    $r.Result.error.code | Should -Be 'ARGS_INVALID'
    $r.Result.error.message | Should -BeLike '*"passwords"*'
  }
}

Describe 'inventory helpers' {
  It 'finds the executable of a service command line <PathName>' -ForEach @(
    @{ PathName = '"C:\Program Files\EHR\app.exe" -k x'; Want = 'C:\Program Files\EHR\app.exe' },
    @{ PathName = 'C:\Program Files\EHR\app.exe -k x'; Want = 'C:\Program Files\EHR\app.exe' },
    @{ PathName = 'C:\EHR\svc.bat arg'; Want = 'C:\EHR\svc.bat' }
  ) {
    Get-RubiconBinaryPath $PathName | Should -Be $Want
  }
  It 'finds quoted and unquoted absolute paths in text' {
    $found = Get-RubiconPathsInText '-a "D:\EHR\with space\x" -b D:\EHR\Y -c \\srv\share\dir rel\path'
    $found | Should -Be @('D:\EHR\with space\x', 'D:\EHR\Y', '\\srv\share\dir')
  }
}
