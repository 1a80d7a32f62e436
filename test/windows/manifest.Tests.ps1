# The manifest script on a real tree: unicode, long and odd names,
# symlinks (reported, not followed), a FIFO, a file locked by another open,
# excludes, ordering, hashes checked against Get-FileHash. The Windows-only
# failure (access denied on Windows) is simulated where opening a file.

BeforeAll {
  . $PSScriptRoot/helpers/Load.ps1 -Script manifest
  $script:Root = Join-Path ([System.IO.Path]::GetTempPath()) ('rubicon-manifest-' + [guid]::NewGuid())
  $null = New-Item -ItemType Directory -Path $script:Root
  $script:Files = [ordered]@{}
  function Add-TreeFile {
    param([string]$Rel, [string]$Content)
    $full = [System.IO.Path]::Combine($script:Root, $Rel)
    $null = [System.IO.Directory]::CreateDirectory([System.IO.Path]::GetDirectoryName($full))
    [System.IO.File]::WriteAllText($full, $Content, (New-Object System.Text.UTF8Encoding $false))
    $script:Files[$Rel] = $full
  }
  $long = (1..6 | ForEach-Object { 'segment-' + $_ + '-' + ('l' * 40) }) -join '/'
  Add-TreeFile 'plain.txt' 'hello'
  Add-TreeFile 'empty.bin' ''
  Add-TreeFile ('caf' + [char]0xE9 + '/r' + [char]0xE9 + 'sum' + [char]0xE9 + '.txt') 'nfc'
  Add-TreeFile ('cafe' + [char]0x301 + '/nfd.txt') 'nfd'
  Add-TreeFile ([char]0x65E5 + [char]0x672C + '/' + [char]0x30C7 + [char]0x30FC + [char]0x30BF + '.csv') 'jp'
  Add-TreeFile ('emoji-' + [char]::ConvertFromUtf32(0x1F600) + '.txt') 'astral'
  Add-TreeFile ('emoji-' + [char]0xFFFD + '.txt') 'bmp'
  Add-TreeFile 'we"ird $name `tick [1] (2) {3} #4 %5 &6 ''7''.txt' 'odd'
  Add-TreeFile (' leading space.txt') 'space'
  Add-TreeFile ("line`nbreak.txt") 'newline'
  Add-TreeFile '-dash.txt' 'dash'
  Add-TreeFile 'a/b' 'folder a, file b'
  Add-TreeFile 'a-b' 'sorts after a/ by UTF-16 code units'
  Add-TreeFile ($long + '/deep.txt') 'long'
  Add-TreeFile 'skip/me.txt' 'excluded'
  Add-TreeFile 'keep/skip.txt' 'not excluded'
  $null = New-Item -ItemType Directory -Path (Join-Path $script:Root 'empty-folder')
  $script:LinkedDir = Join-Path ([System.IO.Path]::GetTempPath()) ('rubicon-linked-' + [guid]::NewGuid())
  $null = New-Item -ItemType Directory -Path $script:LinkedDir
  [System.IO.File]::WriteAllText((Join-Path $script:LinkedDir 'outside.txt'), 'must not appear')
  $null = New-Item -ItemType SymbolicLink -Path (Join-Path $script:Root 'link-to-dir') -Target $script:LinkedDir
  $null = New-Item -ItemType SymbolicLink -Path (Join-Path $script:Root 'link-to-file') -Target $script:Files['plain.txt']
  $null = New-Item -ItemType SymbolicLink -Path (Join-Path $script:Root 'dangling') -Target '/nonexistent/rubicon'
  & mkfifo (Join-Path $script:Root 'pipe')
  Add-TreeFile 'locked.db' 'locked'
  $script:Holder = [System.IO.File]::Open($script:Files['locked.db'], 'Open', 'ReadWrite', 'None')
  $script:Run = Invoke-TestScript -Arguments @{ root = $script:Root; exclude = @('skip', './nothing/') }
}

AfterAll {
  if ($script:Holder) { $script:Holder.Dispose() }
  Remove-Item -LiteralPath $script:Root -Recurse -Force -ErrorAction SilentlyContinue
  Remove-Item -LiteralPath $script:LinkedDir -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'manifest of a real tree' {
  It 'succeeds, exit 0, and says the tree is incomplete because one file is locked' {
    $script:Run.ExitCode | Should -Be 0
    $script:Run.Result.ok | Should -BeTrue
    $script:Run.Result.data.complete | Should -BeFalse
    $script:Run.Result.data.unreadable | Should -Be 1
  }
  It 'lists every regular file once, with the relative POSIX path, size and the SHA-256 Get-FileHash computes' {
    $files = @($script:Run.Records | Where-Object { $_.kind -eq 'file' })
    $expected = @($script:Files.Keys | Where-Object { $_ -ne 'skip/me.txt' -and $_ -ne 'locked.db' })
    @($files | ForEach-Object { $_.path } | Sort-Object) | Should -Be @($expected | Sort-Object)
    foreach ($f in $files) {
      $full = $script:Files[$f.path]
      $f.size | Should -Be (Get-Item -LiteralPath $full).Length
      $f.sha256 | Should -Be (Get-FileHash -LiteralPath $full -Algorithm SHA256).Hash.ToLowerInvariant()
      $f.stable | Should -BeTrue
    }
  }
  It 'gives mtimeMs as milliseconds since 1970 UTC and the Unix mode bits' {
    $f = $script:Run.Records | Where-Object { $_.path -eq 'plain.txt' }
    $want = ([System.IO.File]::GetLastWriteTimeUtc($script:Files['plain.txt']) - [datetime]::new(1970, 1, 1, 0, 0, 0, [System.DateTimeKind]::Utc)).TotalMilliseconds
    [math]::Abs([double]$f.mtimeMs - $want) | Should -BeLessThan 0.001
    $f.mode | Should -Be ([int][System.IO.File]::GetUnixFileMode($script:Files['plain.txt']))
  }
  It 'orders entries as Rubicon compares paths: UTF-16 code units, folders as "name/"' {
    $paths = @($script:Run.Records | ForEach-Object { $_.path })
    $sorted = [string[]]$paths.Clone()
    [System.Array]::Sort($sorted, [System.StringComparer]::Ordinal)
    $paths | Should -Be $sorted
    # an astral character (surrogates D83D DE00) sorts before U+FFFD in UTF-16 order
    [array]::IndexOf($paths, 'emoji-' + [char]::ConvertFromUtf32(0x1F600) + '.txt') | Should -BeLessThan ([array]::IndexOf($paths, 'emoji-' + [char]0xFFFD + '.txt'))
    # 'a-b' (0x2D) before 'a/b' (0x2F): whole paths compare, not folder by folder
    [array]::IndexOf($paths, 'a-b') | Should -BeLessThan ([array]::IndexOf($paths, 'a/b'))
  }
  It 'keeps composed and decomposed names apart, byte for byte' {
    $paths = @($script:Run.Records | ForEach-Object { $_.path })
    $paths | Should -Contain ('caf' + [char]0xE9 + '/r' + [char]0xE9 + 'sum' + [char]0xE9 + '.txt')
    $paths | Should -Contain ('cafe' + [char]0x301 + '/nfd.txt')
  }
  It 'reaches a path longer than 260 characters' {
    $deep = @($script:Run.Records | Where-Object { $_.path -like '*deep.txt' })
    $deep.Count | Should -Be 1
    ([System.IO.Path]::Combine($script:Root, $deep[0].path)).Length | Should -BeGreaterThan 260
  }
  It 'reports symlinks as reparse points with their target and never follows them' {
    $links = @($script:Run.Records | Where-Object { $_.kind -eq 'reparse' })
    @($links | ForEach-Object { $_.path }) | Should -Be @('dangling', 'link-to-dir', 'link-to-file')
    ($links | Where-Object { $_.path -eq 'link-to-dir' }).target | Should -Be $script:LinkedDir
    ($links | Where-Object { $_.path -eq 'dangling' }).linkType | Should -Be 'SymbolicLink'
    @($script:Run.Records | Where-Object { $_.path -like 'link-to-dir/*' }).Count | Should -Be 0
    $script:Run.Result.data.reparse | Should -Be 3
  }
  It 'reports a FIFO as special instead of blocking on it' {
    $p = @($script:Run.Records | Where-Object { $_.path -eq 'pipe' })
    $p.Count | Should -Be 1
    $p[0].kind | Should -Be 'special'
    $p[0].type | Should -Be 'fifo'
  }
  It 'reports the file locked by another open as unreadable LOCKED, with its size' {
    $l = @($script:Run.Records | Where-Object { $_.path -eq 'locked.db' })
    $l.Count | Should -Be 1
    $l[0].kind | Should -Be 'unreadable'
    $l[0].code | Should -Be 'LOCKED'
    $l[0].size | Should -Be 6
  }
  It 'leaves out exactly the excluded folder and says nothing about empty folders' {
    @($script:Run.Records | Where-Object { $_.path -like 'skip/*' }).Count | Should -Be 0
    @($script:Run.Records | Where-Object { $_.path -eq 'keep/skip.txt' }).Count | Should -Be 1
    @($script:Run.Records | Where-Object { $_.path -like 'empty-folder*' }).Count | Should -Be 0
  }
  It 'counts what it listed' {
    $d = $script:Run.Result.data
    $d.files | Should -Be @($script:Run.Records | Where-Object { $_.kind -eq 'file' }).Count
    $d.bytes | Should -Be ((@($script:Run.Records | Where-Object { $_.kind -eq 'file' }) | Measure-Object -Property size -Sum).Sum)
    $d.special | Should -Be 1
    $script:Run.Result.records | Should -Be $script:Run.Records.Count
  }
}

Describe 'manifest failures' {
  BeforeAll {
    # A small tree: every file opened through a mock costs a Pester dispatch.
    $script:Small = Join-Path ([System.IO.Path]::GetTempPath()) ('rubicon-manifest-small-' + [guid]::NewGuid())
    foreach ($rel in 'plain.txt', 'empty.bin', 'keep/skip.txt', 'a/b') {
      $full = [System.IO.Path]::Combine($script:Small, $rel)
      $null = [System.IO.Directory]::CreateDirectory([System.IO.Path]::GetDirectoryName($full))
      [System.IO.File]::WriteAllText($full, $rel)
    }
  }
  AfterAll { Remove-Item -LiteralPath $script:Small -Recurse -Force -ErrorAction SilentlyContinue }
  It 'reports a file Windows refuses to open (access denied) as unreadable ACCESS_DENIED and goes on' {
    Mock Open-RubiconFileForRead -ParameterFilter { $Path -like '*plain.txt' } { throw [System.UnauthorizedAccessException]::new("Access to the path '$Path' is denied.") }
    $r = Invoke-TestScript -Arguments @{ root = $script:Small }
    $r.ExitCode | Should -Be 0
    $u = @($r.Records | Where-Object { $_.kind -eq 'unreadable' })
    $u.Count | Should -Be 1
    $u[0].path | Should -Be 'plain.txt'
    $u[0].code | Should -Be 'ACCESS_DENIED'
    @($r.Records | Where-Object { $_.kind -eq 'file' -and $_.path -eq 'a/b' }).Count | Should -Be 1
  }
  It 'reports a Windows sharing violation (HRESULT 0x80070020) as LOCKED' {
    Mock Open-RubiconFileForRead -ParameterFilter { $Path -like '*empty.bin' } { throw [System.IO.IOException]::new('The process cannot access the file because it is being used by another process.', -2147024864) }
    $r = Invoke-TestScript -Arguments @{ root = $script:Small }
    ($r.Records | Where-Object { $_.path -eq 'empty.bin' }).code | Should -Be 'LOCKED'
  }
  It 'reports a folder it cannot list as dir-unreadable and goes on' {
    Mock Get-RubiconManifestChildren -ParameterFilter { $Dir.Name -eq 'keep' } { throw [System.UnauthorizedAccessException]::new("Access to the path '$($Dir.FullName)' is denied.") }
    $r = Invoke-TestScript -Arguments @{ root = $script:Small }
    $d = @($r.Records | Where-Object { $_.kind -eq 'dir-unreadable' })
    $d.Count | Should -Be 1
    $d[0].path | Should -Be 'keep'
    $d[0].code | Should -Be 'ACCESS_DENIED'
    $r.Result.data.complete | Should -BeFalse
  }
  It 'marks a file that changed while it was read as not stable' {
    Mock Get-RubiconFileSha256 -ParameterFilter { $Path -like '*plain.txt' } { [System.IO.File]::AppendAllText($Path, '!'); return ('0' * 64) }
    $r = Invoke-TestScript -Arguments @{ root = $script:Small }
    ($r.Records | Where-Object { $_.path -eq 'plain.txt' }).stable | Should -BeFalse
    $r.Result.data.unstable | Should -Be 1
    $r.Result.data.complete | Should -BeFalse
  }
  It 'refuses <Why> with <Code>, exit 1' -ForEach @(
    @{ Why = 'no root'; Arguments = @{}; Code = 'ARGS_INVALID' },
    @{ Why = 'a relative root'; Arguments = @{ root = 'relative/dir' }; Code = 'ARGS_INVALID' },
    @{ Why = 'an exclude that escapes the root'; Arguments = @{ root = '/tmp'; exclude = @('../etc') }; Code = 'ARGS_INVALID' },
    @{ Why = 'a root that does not exist'; Arguments = @{ root = '/nonexistent/rubicon/root' }; Code = 'PATH_NOT_FOUND' }
  ) {
    $r = Invoke-TestScript -Arguments $Arguments
    $r.ExitCode | Should -Be 1
    $r.Result.ok | Should -BeFalse
    $r.Result.error.code | Should -Be $Code
  }
}
