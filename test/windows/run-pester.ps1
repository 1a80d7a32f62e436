# Runs every *.Tests.ps1 here in this one pwsh process with Pester 5 and
# writes the results as JSON to -ResultPath, one entry per test (its full
# Describe/It path, result, duration, first error) and one per container
# (a file that fails to load or whose BeforeAll throws has no tests to
# report, so it must be seen on its own). Called by pester.test.ts.
param(
  [Parameter(Mandatory = $true)][string]$PesterModule,
  [Parameter(Mandatory = $true)][string]$ResultPath,
  # Test files or folders separated by '|' (pwsh -File cannot pass an array).
  [string]$Path = $PSScriptRoot
)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
Import-Module $PesterModule -Force
if ((Get-Module Pester).Version -lt [version]'5.7.1') { throw "Pester 5.7.1 or later is needed, found $((Get-Module Pester).Version)" }

$config = New-PesterConfiguration
$config.Run.Path = [string[]]@($Path.Split('|') | Where-Object { $_ -ne '' })
$config.Run.PassThru = $true
$config.Output.Verbosity = 'None'
$config.Should.ErrorAction = 'Stop'
$run = Invoke-Pester -Configuration $config
if ($null -eq $run) { throw 'Invoke-Pester returned no result' }

function Get-FirstError {
  param($ErrorRecords)
  $e = @($ErrorRecords) | Select-Object -First 1
  if ($null -eq $e) { return $null }
  $msg = [string]$e.Exception.Message
  if ($e.ScriptStackTrace) { $msg += "`n" + (($e.ScriptStackTrace -split "`n") | Select-Object -First 3) -join "`n" }
  return $msg
}

$tests = @($run.Tests | ForEach-Object {
    [ordered]@{
      file = [System.IO.Path]::GetFileName([string]$_.ScriptBlock.File)
      path = $(if ($_.PSObject.Properties['ExpandedPath'] -and $_.ExpandedPath) { [string]$_.ExpandedPath } else { @($_.Path) -join '.' })
      result = [string]$_.Result
      durationMs = [int]$_.Duration.TotalMilliseconds
      error = (Get-FirstError $_.ErrorRecord)
    }
  })
$containers = @($run.Containers | ForEach-Object {
    [ordered]@{
      file = [System.IO.Path]::GetFileName([string]$_.Item)
      result = [string]$_.Result
      error = (Get-FirstError $_.ErrorRecord)
    }
  })
$doc = [ordered]@{ pester = (Get-Module Pester).Version.ToString(); powershell = $PSVersionTable.PSVersion.ToString(); result = [string]$run.Result; tests = $tests; containers = $containers }
[System.IO.File]::WriteAllText($ResultPath, ($doc | ConvertTo-Json -Depth 6), (New-Object System.Text.UTF8Encoding $false))
