# The Windows PowerShell 5.1 guard (ps51-guard.ps1): it catches each
# construct 5.1 lacks (a fixture per construct, first line "# expect:
# <rule>"), lets 5.1-valid look-alikes through, and finds nothing in any
# real script: neither in the source files nor in the texts scripts.ts
# assembles (written by pester.test.ts to $env:RUBICON_ASSEMBLED_DIR).

BeforeDiscovery {
  $script:Fixtures = @(Get-ChildItem -Path (Join-Path $PSScriptRoot 'fixtures/ps7-only') -Filter '*.ps1' | ForEach-Object {
      @{ Name = $_.Name; Path = $_.FullName; Rule = ((Get-Content -LiteralPath $_.FullName -TotalCount 1) -replace '^# expect: ', '') }
    })
  $script:Sources = @(Get-ChildItem -Path (Join-Path $PSScriptRoot '../../src/machines/windows/scripts') -Filter '*.ps1' | ForEach-Object { @{ Name = $_.Name; Path = $_.FullName } })
  $script:Assembled = @()
  if ($env:RUBICON_ASSEMBLED_DIR) { $script:Assembled = @(Get-ChildItem -Path $env:RUBICON_ASSEMBLED_DIR -Filter '*.ps1' | ForEach-Object { @{ Name = $_.Name; Path = $_.FullName } }) }
}

BeforeAll { . (Join-Path $PSScriptRoot 'ps51-guard.ps1') }

Describe 'the 5.1 guard catches <Rule> (<Name>)' -ForEach $script:Fixtures {
  It 'reports exactly that rule' {
    $found = Get-Ps51Finding -Path $Path
    @($found | ForEach-Object { $_.rule } | Select-Object -Unique) | Should -Be @($Rule)
    $found[0].line | Should -BeGreaterThan 1
  }
}

Describe 'the 5.1 guard' {
  It 'has a fixture for every construct it refuses' {
    $rules = @($Fixtures | ForEach-Object { $_.Rule } | Sort-Object -Unique)
    foreach ($r in 'ternary', 'null-coalescing', 'null-coalescing-assignment', 'null-conditional', 'pipeline-chain', 'foreach-parallel', 'clean-block', 'unicode-escape', 'parameter-AsHashtable', 'parameter-AsByteStream', 'encoding-7-only', 'platform-variable', 'command-7-only', 'parse-error') { $rules | Should -Contain $r }
  } -ForEach @{ Fixtures = $script:Fixtures }
  It 'lets 5.1-valid look-alikes through (guarded $IsLinux, if-expressions, single-quoted `u{})' {
    $found = Get-Ps51Finding -Path (Join-Path $PSScriptRoot 'fixtures/ps51-clean.ps1')
    @($found).Count | Should -Be 0
  }
  It 'reads text as well as files' {
    @(Get-Ps51Finding -Text '$a = $b ?? $c').Count | Should -Be 1
  }
}

Describe 'every script source passes the guard: <Name>' -ForEach $script:Sources {
  It 'has no 5.1-incompatible construct' {
    $found = Get-Ps51Finding -Path $Path
    @($found | ForEach-Object { $_.rule + ' at line ' + $_.line + ': ' + $_.text }) | Should -Be @()
  }
  It 'is ASCII only and has a version header' {
    $bytes = [System.IO.File]::ReadAllBytes($Path)
    @($bytes | Where-Object { $_ -gt 127 }).Count | Should -Be 0
    (Get-Content -LiteralPath $Path -TotalCount 3) -join "`n" | Should -Match '(?m)^# Version: \d+$'
  }
}

Describe 'every assembled script passes the guard: <Name>' -ForEach $script:Assembled {
  It 'has no 5.1-incompatible construct and parses' {
    $found = Get-Ps51Finding -Path $Path
    @($found | ForEach-Object { $_.rule + ' at line ' + $_.line + ': ' + $_.text }) | Should -Be @()
  }
}

Describe 'assembled scripts were given to the guard' {
  It 'found the six assembled scripts (RUBICON_ASSEMBLED_DIR)' {
    $Assembled.Count | Should -Be 6
  } -ForEach @{ Assembled = $script:Assembled }
}
