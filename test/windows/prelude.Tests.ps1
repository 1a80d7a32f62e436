# The prelude every script shares: JSON in and out, the output protocol,
# error results, paths, I/O error codes, native commands. All of it runs
# for real here; nothing is mocked.

BeforeAll {
  . $PSScriptRoot/helpers/Load.ps1 -Script manifest
  function Invoke-RubiconProbe {
    param($A)
    switch ([string]$A['mode']) {
      'ok' { return [ordered]@{ one = @('only'); none = @(); when = [datetime]::new(2026, 11, 30, 22, 0, 0, [System.DateTimeKind]::Utc); kind = [System.IO.FileAttributes]::ReadOnly; text = [string]$A['text'] } }
      'stream' { Write-RubiconRecord ([ordered]@{ n = 1 }); Write-RubiconRecord '{"n":2}'; return [ordered]@{ streamed = 2 } }
      'stray' { 'leaked into the pipeline'; return [ordered]@{ x = 1 } }
      'coded' { throw (New-RubiconError 'PROBE_FAILED' 'the probe failed on purpose' ([ordered]@{ item = 'x' })) }
      'unexpected' { $null = [System.IO.File]::ReadAllBytes('/nonexistent/rubicon/probe') }
      'unserializable' { return [ordered]@{ bad = [System.Text.StringBuilder]::new() } }
    }
  }
}

Describe 'JSON out (ConvertTo-RubiconJson)' {
  It 'keeps a one-element array an array and an empty array empty' {
    ConvertTo-RubiconJson ([ordered]@{ a = @('x'); b = @(); c = , @(1) }) | Should -Be '{"a":["x"],"b":[],"c":[[1]]}'
  }
  It 'writes dates as ISO 8601 UTC strings and enums by name' {
    $d = [datetime]::new(2026, 1, 2, 3, 4, 5, 678, [System.DateTimeKind]::Utc)
    ConvertTo-RubiconJson ([ordered]@{ d = $d; o = [System.DateTimeOffset]::new($d); e = [System.DayOfWeek]::Friday }) | Should -Be '{"d":"2026-01-02T03:04:05.678Z","o":"2026-01-02T03:04:05.678Z","e":"Friday"}'
  }
  It 'escapes every character outside printable ASCII, so stdout is pure ASCII' {
    $s = "a`"b\c`n`t" + [char]0x01 + [char]0xE9 + [char]0x65E5 + [char]::ConvertFromUtf32(0x1F600)
    $json = ConvertTo-RubiconJson $s
    $json | Should -Be '"a\"b\\c\n\t\u0001\u00e9\u65e5\ud83d\ude00"'
    $json | Should -Not -Match '[^\x20-\x7E]'
  }
  It 'writes numbers in invariant culture, round-trippable' {
    ConvertTo-RubiconJson ([ordered]@{ i = 42; l = 9007199254740993L; d = 0.1; u = [uint64]18446744073709551615 }) | Should -Be '{"i":42,"l":9007199254740993,"d":0.1,"u":18446744073709551615}'
  }
  It 'keeps dictionary order and writes PSCustomObjects by property' {
    ConvertTo-RubiconJson ([ordered]@{ z = 1; a = [pscustomobject]@{ y = $true; b = $null } }) | Should -Be '{"z":1,"a":{"y":true,"b":null}}'
  }
  It 'refuses NaN and types it has no JSON form for (INTERNAL)' {
    { ConvertTo-RubiconJson ([double]::NaN) } | Should -Throw -ExpectedMessage '*NaN*'
    $e = $null
    try { ConvertTo-RubiconJson ([System.Text.StringBuilder]::new()) } catch { $e = Get-RubiconErrorInfo $_ }
    $e.code | Should -Be 'INTERNAL'
    $e.message | Should -BeLike '*System.Text.StringBuilder*'
  }
}

Describe 'JSON in (ConvertFrom-RubiconJson)' {
  It 'parses objects in order, arrays as arrays, numbers as long or double' {
    $v = ConvertFrom-RubiconJson '{"b":[1],"a":{"x":1.5,"y":-7,"z":[]},"t":true,"n":null}'
    @($v.Keys) | Should -Be @('b', 'a', 't', 'n')
    $v.b.GetType().Name | Should -Be 'Object[]'
    $v.b.Count | Should -Be 1
    $v.a.x | Should -BeOfType [double]
    $v.a.y | Should -BeOfType [long]
    $v.a.z.Count | Should -Be 0
    $v.t | Should -BeTrue
    $v.n | Should -BeNullOrEmpty
  }
  It 'keeps an ISO date string a string (PowerShell 7 ConvertFrom-Json would not)' {
    $v = ConvertFrom-RubiconJson '{"d":"2026-01-02T03:04:05Z"}'
    $v.d | Should -BeOfType [string]
    $v.d | Should -Be '2026-01-02T03:04:05Z'
  }
  It 'decodes every escape, including surrogate pairs' {
    (ConvertFrom-RubiconJson '"a\"b\\c\/d\n\u00e9\ud83d\ude00"') | Should -Be ("a`"b\c/d`n" + [char]0xE9 + [char]::ConvertFromUtf32(0x1F600))
  }
  It 'round-trips what ConvertTo-RubiconJson writes' {
    $text = ConvertTo-RubiconJson ([ordered]@{ p = "C:\EHR\X`t" + [char]0x2019; list = @(1, 'two', $false, $null); nested = [ordered]@{ deep = @(@()) } })
    ConvertTo-RubiconJson (ConvertFrom-RubiconJson $text) | Should -Be $text
  }
  It 'refuses broken JSON as ARGS_INVALID' -ForEach @(
    @{ Text = '{"a":' }, @{ Text = '{"a" 1}' }, @{ Text = '[1,]' }, @{ Text = '{a:1}' }, @{ Text = '{"a":1} x' }, @{ Text = "`"ctl`u{0001}`"" }
  ) {
    $e = $null
    try { $null = ConvertFrom-RubiconJson $Text } catch { $e = Get-RubiconErrorInfo $_ }
    $e.code | Should -Be 'ARGS_INVALID'
  }
}

Describe 'the output protocol (Invoke-RubiconEntry)' {
  It 'writes BEGIN, the result and a sentinel whose hash and length match' {
    $r = Invoke-TestScript -Name probe -Arguments @{ mode = 'ok'; text = 'caf' + [char]0xE9 }
    $r.ExitCode | Should -Be 0
    $r.Result.ok | Should -BeTrue
    $r.Result.script | Should -Be 'probe'
    $r.Result.data.one.GetType().Name | Should -Be 'Object[]'
    $r.Result.data.one.Count | Should -Be 1
    $r.Result.data.none.Count | Should -Be 0
    $r.Result.data.when | Should -Be '2026-11-30T22:00:00.000Z'
    $r.Result.data.kind | Should -Be 'ReadOnly'
    $r.Result.data.text | Should -Be ('caf' + [char]0xE9)
    $r.Result.host.psVersion | Should -Be $PSVersionTable.PSVersion.ToString()
    $r.Result.startedAt | Should -Match '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$'
  }
  It 'streams records before the result, counted in it' {
    $r = Invoke-TestScript -Name probe -Arguments @{ mode = 'stream' }
    $r.Records.Count | Should -Be 2
    $r.Records[1].n | Should -Be 2
    $r.Result.records | Should -Be 2
  }
  It 'turns output leaked into the pipeline into an INTERNAL error, exit 1' {
    $r = Invoke-TestScript -Name probe -Arguments @{ mode = 'stray' }
    $r.ExitCode | Should -Be 1
    $r.Result.ok | Should -BeFalse
    $r.Result.error.code | Should -Be 'INTERNAL'
    $r.Result.error.message | Should -BeLike '*2 pipeline outputs (String, OrderedDictionary)*'
    $r.Result.error.message | Should -Not -BeLike '*leaked*'
  }
  It 'reports a coded error with its details, exit 1' {
    $r = Invoke-TestScript -Name probe -Arguments @{ mode = 'coded' }
    $r.ExitCode | Should -Be 1
    $r.Result.error.code | Should -Be 'PROBE_FAILED'
    $r.Result.error.details.item | Should -Be 'x'
  }
  It 'reports an unexpected exception by its kind and the line it happened on' {
    $r = Invoke-TestScript -Name probe -Arguments @{ mode = 'unexpected' }
    $r.ExitCode | Should -Be 1
    $r.Result.error.code | Should -BeIn @('PATH_NOT_FOUND', 'UNEXPECTED')
    $r.Result.error.where | Should -Match '^line \d+$'
  }
  It 'reports a result that cannot be serialized as INTERNAL, still with a valid sentinel' {
    $r = Invoke-TestScript -Name probe -Arguments @{ mode = 'unserializable' }
    $r.ExitCode | Should -Be 1
    $r.Result.error.code | Should -Be 'INTERNAL'
  }
  It 'refuses an argument that is not base64 JSON of an object (ARGS_INVALID)' -ForEach @(
    @{ Encoded = 'not base64!' }, @{ Encoded = [Convert]::ToBase64String([byte[]](0xFF, 0xFE, 0x00)) }, @{ Encoded = [Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes('[1,2]')) }
  ) {
    $w = New-Object System.IO.StringWriter
    $code = Invoke-RubiconEntry -Script probe -Version 1 -EncodedArgs $Encoded -Body 'Invoke-RubiconProbe' -Writer $w
    $code | Should -Be 1
    $w.ToString() | Should -Match '"code":"ARGS_INVALID"'
  }
}

Describe 'Get-RubiconArg' {
  It 'names the missing or mistyped argument' {
    $a = ConvertFrom-RubiconJson '{"n":"x","list":"no"}'
    { Get-RubiconArg $a 'root' -Required } | Should -Throw -ExpectedMessage 'argument "root" is required'
    { Get-RubiconArg $a 'list' -Type array } | Should -Throw -ExpectedMessage 'argument "list" must be array'
    @(Get-RubiconArg $a 'missing' -Type array).Count | Should -Be 0
    @(Get-RubiconArg (ConvertFrom-RubiconJson '{"l":["one"]}') 'l' -Type array) | Should -Be @('one')
    Get-RubiconArg $a 'n' | Should -Be 'x'
  }
}

Describe 'long paths (ConvertTo-RubiconLongPath)' {
  It 'maps <In> to <Out> on Windows' -ForEach @(
    @{ In = 'C:\EHR\X'; Out = '\\?\C:\EHR\X'; Back = 'C:\EHR\X' },
    @{ In = 'D:/EHR/X'; Out = '\\?\D:\EHR\X'; Back = 'D:\EHR\X' },
    @{ In = '\\vault\share\run1'; Out = '\\?\UNC\vault\share\run1'; Back = '\\vault\share\run1' },
    @{ In = '\\?\C:\already'; Out = '\\?\C:\already'; Back = 'C:\already' }
  ) {
    ConvertTo-RubiconLongPath -Path $In -Windows $true | Should -Be $Out
    ConvertFrom-RubiconLongPath (ConvertTo-RubiconLongPath -Path $In -Windows $true) | Should -Be $Back
  }
  It 'refuses a relative path on Windows and changes nothing elsewhere' {
    { ConvertTo-RubiconLongPath -Path 'EHR\X' -Windows $true } | Should -Throw -ExpectedMessage '*not absolute*'
    ConvertTo-RubiconLongPath -Path '/srv/ehr' -Windows $false | Should -Be '/srv/ehr'
  }
}

Describe 'I/O error codes (Get-RubiconIoErrorCode)' {
  # Windows' HRESULTs for ERROR_SHARING_VIOLATION (32) and ERROR_LOCK_VIOLATION (33):
  # https://learn.microsoft.com/en-us/windows/win32/debug/system-error-codes--0-499-
  It 'knows <Name>' -ForEach @(
    @{ Name = 'a sharing violation (0x80070020)'; Ex = [System.IO.IOException]::new('The process cannot access the file because it is being used by another process.', -2147024864); Code = 'LOCKED' },
    @{ Name = 'a lock violation (0x80070021)'; Ex = [System.IO.IOException]::new('The process cannot access the file because another process has locked a portion of the file.', -2147024863); Code = 'LOCKED' },
    @{ Name = 'access denied'; Ex = [System.UnauthorizedAccessException]::new('Access to the path is denied.'); Code = 'ACCESS_DENIED' },
    @{ Name = 'a vanished file'; Ex = [System.IO.FileNotFoundException]::new('gone'); Code = 'VANISHED' },
    @{ Name = 'another I/O error'; Ex = [System.IO.IOException]::new('The semaphore timeout period has expired.', -2147024775); Code = 'IO_ERROR' }
  ) {
    Get-RubiconIoErrorCode $Ex | Should -Be $Code
  }
  It 'sees a real lock taken by another open of the file (FileShare.None)' {
    $f = Join-Path ([System.IO.Path]::GetTempPath()) ('rubicon-lock-' + [guid]::NewGuid())
    [System.IO.File]::WriteAllText($f, 'x')
    $holder = [System.IO.File]::Open($f, 'Open', 'ReadWrite', 'None')
    try {
      $code = $null
      try { $s = Open-RubiconFileForRead $f; $s.Dispose() } catch { $code = Get-RubiconIoErrorCode $_.Exception }
      $code | Should -Be 'LOCKED'
    } finally { $holder.Dispose(); Remove-Item -LiteralPath $f -Force }
  }
}

Describe 'native commands (Invoke-RubiconNative)' {
  It 'returns the exit code and stdout and stderr, without throwing on stderr' {
    $r = Invoke-RubiconNative -FilePath 'sh' -ArgumentList @('-c', 'echo out; echo err >&2; exit 3')
    $r.exitCode | Should -Be 3
    $r.output | Should -Contain 'out'
    $r.output | Should -Contain 'err'
  }
  It 'says a missing program is COMMAND_UNAVAILABLE' {
    $e = $null
    try { $null = Invoke-RubiconNative -FilePath 'rubicon-no-such-tool' } catch { $e = Get-RubiconErrorInfo $_ }
    $e.code | Should -Be 'COMMAND_UNAVAILABLE'
  }
  It 'refuses an argument with a double quote (5.1 would pass it wrongly)' {
    { Invoke-RubiconNative -FilePath 'sh' -ArgumentList @('-c', 'echo "x"') } | Should -Throw -ExpectedMessage '*double quote*'
  }
}

Describe 'tool text files (Read-RubiconTextFile)' {
  It 'reads UTF-16LE with and without a BOM, and UTF-8' {
    $dir = Join-Path ([System.IO.Path]::GetTempPath()) ('rubicon-text-' + [guid]::NewGuid())
    $null = New-Item -ItemType Directory -Path $dir
    try {
      $t = 'D:\EHR\' + [char]0xC5 + 'r'
      [System.IO.File]::WriteAllText("$dir/a", $t, (New-Object System.Text.UnicodeEncoding $false, $true))
      [System.IO.File]::WriteAllText("$dir/b", $t, (New-Object System.Text.UnicodeEncoding $false, $false))
      [System.IO.File]::WriteAllText("$dir/c", $t, (New-Object System.Text.UTF8Encoding $false))
      foreach ($f in 'a', 'b', 'c') { Read-RubiconTextFile "$dir/$f" | Should -Be $t }
    } finally { Remove-Item -LiteralPath $dir -Recurse -Force }
  }
}
