# Dot-source from a Pester BeforeAll:  . $PSScriptRoot/helpers/Load.ps1 -Script manifest
#
# Loads what scripts.ts assembles for that script (the prelude, the
# libraries its "# Include:" line names, the script), the stubs of the
# Windows-only commands that do not exist here, the builders of
# Windows-shaped outputs, and Invoke-TestScript. Everything lands in the
# caller's scope, as dot-sourcing does.
param([Parameter(Mandatory = $true)][string]$Script)

$scriptsDir = Join-Path $PSScriptRoot '../../../src/machines/windows/scripts'
. (Join-Path $scriptsDir 'prelude.ps1')
$scriptFile = Join-Path $scriptsDir ($Script + '.ps1')
$includeLine = @(Get-Content -LiteralPath $scriptFile | Where-Object { $_ -match '^# Include: ' })
if ($includeLine.Count -gt 0) {
  foreach ($lib in ($includeLine[0] -replace '^# Include: ', '').Split(',')) { . (Join-Path $scriptsDir ($lib.Trim() + '.lib.ps1')) }
}
. $scriptFile
. (Join-Path $PSScriptRoot 'WindowsStubs.ps1')
. (Join-Path $PSScriptRoot 'WindowsShapes.ps1')

$script:TestScriptName = $Script

function Invoke-TestScript {
  # Runs the script body through Invoke-RubiconEntry as a transport would
  # see it (into a StringWriter instead of stdout), checks the BEGIN line
  # and the sentinel independently of scripts.ts, and returns
  # {ExitCode, Text, Records, Result} (JSON read with dates kept as strings).
  param([hashtable]$Arguments = @{}, [string]$Name = $script:TestScriptName)
  $json = ConvertTo-RubiconJson $Arguments
  $encoded = [Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($json))
  $body = 'Invoke-Rubicon' + $Name.Substring(0, 1).ToUpperInvariant() + $Name.Substring(1)
  $writer = New-Object System.IO.StringWriter
  $code = Invoke-RubiconEntry -Script $Name -Version 1 -EncodedArgs $encoded -Body $body -Writer $writer
  $text = $writer.ToString()
  $lines = $text.Split("`n")
  if ($lines[0] -notmatch ('^RUBICON-BEGIN v1 ' + $Name + ' 1 [0-9a-f]{64}$')) { throw "no BEGIN line: $($lines[0])" }
  $sentinel = @($lines | Where-Object { $_ -match '^RUBICON-RESULT v1 ' })
  if ($sentinel.Count -ne 1) { throw "expected one RESULT line, got $($sentinel.Count)" }
  $payload = @($lines | Where-Object { $_.StartsWith('{') })
  $bytes = [System.Text.Encoding]::UTF8.GetBytes((($payload | ForEach-Object { $_ + "`n" }) -join ''))
  $sha = [System.Security.Cryptography.SHA256]::Create().ComputeHash($bytes)
  $hex = ([System.BitConverter]::ToString($sha) -replace '-', '').ToLowerInvariant()
  if ($sentinel[0] -ne ('RUBICON-RESULT v1 ' + $hex + ' ' + $bytes.Length)) { throw "sentinel does not match the payload: $($sentinel[0]) vs $hex $($bytes.Length)" }
  if ($text -match '[^\x00-\x7F]') { throw 'stdout is not pure ASCII' }
  $records = @()
  if ($payload.Count -gt 1) { $records = @($payload[0..($payload.Count - 2)] | ForEach-Object { ConvertFrom-Json -InputObject $_ -DateKind String -Depth 100 }) }
  $result = ConvertFrom-Json -InputObject $payload[$payload.Count - 1] -DateKind String -Depth 100
  return [pscustomobject]@{ ExitCode = $code; Text = $text; Records = $records; Result = $result }
}
