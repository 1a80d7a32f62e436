# Parses every statement of a JSON file with Microsoft's T-SQL parser
# (Microsoft.SqlServer.TransactSql.ScriptDom) for SQL Server 2016
# (TSql130Parser) and 2022 (TSql160Parser), in one process. Input: a JSON
# array of { id, text }. Output: { parsed: { 130: n, 160: n }, failures: [{ id, parser, errors[] }] }.
param(
  [Parameter(Mandatory)][string]$Dll,
  [Parameter(Mandatory)][string]$In,
  [Parameter(Mandatory)][string]$Out
)
$ErrorActionPreference = 'Stop'
Add-Type -Path $Dll
$items = @(Get-Content -Raw -LiteralPath $In | ConvertFrom-Json)
$parsers = [ordered]@{
  '130' = [Microsoft.SqlServer.TransactSql.ScriptDom.TSql130Parser]::new($true)
  '160' = [Microsoft.SqlServer.TransactSql.ScriptDom.TSql160Parser]::new($true)
}
# Only statements with errors are written out (with the count parsed per parser): quick for hundreds of statements.
$failures = [System.Collections.Generic.List[object]]::new()
$parsed = [ordered]@{ '130' = 0; '160' = 0 }
foreach ($version in $parsers.Keys) {
  $parser = $parsers[$version]
  foreach ($item in $items) {
    $errors = $null
    $null = $parser.Parse([System.IO.StringReader]::new([string]$item.text), [ref]$errors)
    $parsed[$version]++
    if ($errors.Count -gt 0) {
      $failures.Add([pscustomobject]@{
        id     = [string]$item.id
        parser = $version
        errors = @($errors | ForEach-Object { "line $($_.Line), column $($_.Column): $($_.Message)" })
      })
    }
  }
}
ConvertTo-Json -InputObject ([pscustomobject]@{ parsed = $parsed; failures = @($failures) }) -Depth 5 | Set-Content -LiteralPath $Out -Encoding utf8
