# The Windows PowerShell 5.1 guard (test-time tool, runs under pwsh 7).
#
# Parses PowerShell text with the real parser
# ([System.Management.Automation.Language.Parser]) and reports what Windows
# PowerShell 5.1 (Windows Server 2016-2025) lacks: syntax added in 6/7
# (ternary, ??, ??=, ?. and ?[], && and || chains, clean blocks,
# "`u{...}" escapes), ForEach-Object -Parallel, parameters added in 6/7
# that a script might reach for, commands that do not exist in 5.1, and
# the automatic variables of 6/7 ($IsWindows, $IsLinux, $IsMacOS,
# $IsCoreCLR, $PSStyle) unless read behind a version check
# (`$PSVersionTable.PSVersion.Major -ge 6 -and $IsLinux`). Parse errors
# are findings too.
#
# Dot-source it and call Get-Ps51Finding -Path <file> or -Text <string>;
# each finding is {rule, line, column, text}.

$script:Ps51OnlyParameters = @(
  # command (or * for any), parameter, the shortest unambiguous prefix
  @('*', 'AsHashtable', 'AsH'),
  @('*', 'AsByteStream', 'AsB'),
  @('ConvertFrom-Json', 'Depth', 'De'),
  @('ConvertFrom-Json', 'NoEnumerate', 'No'),
  @('ConvertFrom-Json', 'DateKind', 'Da'),
  @('ConvertTo-Json', 'EnumsAsStrings', 'En'),
  @('ConvertTo-Json', 'AsArray', 'AsA'),
  @('ConvertTo-Json', 'EscapeHandling', 'Es'),
  @('Split-Path', 'LeafBase', 'LeafB'),
  @('Split-Path', 'Extension', 'Ex'),
  @('Join-Path', 'AdditionalChildPath', 'Ad'),
  @('Invoke-WebRequest', 'SkipCertificateCheck', 'SkipC'),
  @('Invoke-RestMethod', 'SkipCertificateCheck', 'SkipC'),
  @('Invoke-WebRequest', 'Authentication', 'Au'),
  @('Invoke-RestMethod', 'Authentication', 'Au'),
  @('Get-ChildItem', 'FollowSymlink', 'Fo'),
  @('Set-Service', 'SecurityDescriptorSddl', 'Se'),
  @('Test-Connection', 'TargetName', 'Ta'),
  @('Select-String', 'Raw', 'Ra'),
  @('Get-Random', 'Shuffle', 'Sh')
)
$script:Ps51OnlyCommands = @('Test-Json', 'Join-String', 'Get-Error', 'Get-Uptime', 'ConvertFrom-Markdown', 'Show-Markdown', 'Remove-Alias', 'Remove-Service', 'Start-ThreadJob', 'ConvertTo-CliXml', 'ConvertFrom-CliXml', 'Get-PSSubsystem', 'Clear-RecycleBin')
$script:Ps51OnlyVariables = @('IsWindows', 'IsLinux', 'IsMacOS', 'IsCoreCLR', 'PSStyle')
$script:Ps51OnlyEncodings = @('utf8NoBOM', 'utf8BOM', 'ansi')
$script:Ps51ForEachNames = @('ForEach-Object', 'foreach', '%')

function New-Ps51Finding {
  param([string]$Rule, $Extent)
  [pscustomobject]@{ rule = $Rule; line = $Extent.StartLineNumber; column = $Extent.StartColumnNumber; text = $Extent.Text.Split("`n")[0].Trim() }
}

function Test-Ps51Guarded {
  # True when a 6/7 automatic variable is read only on PowerShell 6+: the
  # right operand of an -and whose left operand checks the version.
  param($Ast)
  $child = $Ast
  $node = $Ast.Parent
  while ($null -ne $node) {
    if ($node -is [System.Management.Automation.Language.BinaryExpressionAst] -and $node.Operator -eq 'And' -and $node.Right -eq $child -and $node.Left.Extent.Text -match 'PSVersionTable|PSEdition') { return $true }
    $child = $node
    $node = $node.Parent
  }
  return $false
}

function Get-Ps51Finding {
  param([string]$Path, [string]$Text)
  $tokens = $null
  $errors = $null
  if ($Path) { $ast = [System.Management.Automation.Language.Parser]::ParseFile($Path, [ref]$tokens, [ref]$errors) }
  else { $ast = [System.Management.Automation.Language.Parser]::ParseInput($Text, [ref]$tokens, [ref]$errors) }
  $found = New-Object System.Collections.Generic.List[object]
  foreach ($e in $errors) { $found.Add((New-Ps51Finding 'parse-error' $e.Extent)) }
  foreach ($t in $tokens) {
    if (($t.Kind -eq 'StringExpandable' -or $t.Kind -eq 'HereStringExpandable') -and $t.Text -match '`u\{') { $found.Add((New-Ps51Finding 'unicode-escape' $t.Extent)) }
  }
  $all = $ast.FindAll({ $true }, $true)
  foreach ($n in $all) {
    $type = $n.GetType().Name
    switch ($type) {
      'TernaryExpressionAst' { $found.Add((New-Ps51Finding 'ternary' $n.Extent)) }
      'PipelineChainAst' { $found.Add((New-Ps51Finding 'pipeline-chain' $n.Extent)) }
      'BinaryExpressionAst' { if ([string]$n.Operator -eq 'QuestionQuestion') { $found.Add((New-Ps51Finding 'null-coalescing' $n.Extent)) } }
      'AssignmentStatementAst' { if ([string]$n.Operator -eq 'QuestionQuestionEquals') { $found.Add((New-Ps51Finding 'null-coalescing-assignment' $n.Extent)) } }
      'MemberExpressionAst' { if ($n.PSObject.Properties['NullConditional'] -and $n.NullConditional) { $found.Add((New-Ps51Finding 'null-conditional' $n.Extent)) } }
      'InvokeMemberExpressionAst' { if ($n.PSObject.Properties['NullConditional'] -and $n.NullConditional) { $found.Add((New-Ps51Finding 'null-conditional' $n.Extent)) } }
      'IndexExpressionAst' { if ($n.PSObject.Properties['NullConditional'] -and $n.NullConditional) { $found.Add((New-Ps51Finding 'null-conditional' $n.Extent)) } }
      'ScriptBlockAst' { if ($n.PSObject.Properties['CleanBlock'] -and $null -ne $n.CleanBlock) { $found.Add((New-Ps51Finding 'clean-block' $n.CleanBlock.Extent)) } }
      'VariableExpressionAst' {
        $name = $n.VariablePath.UserPath
        if ($script:Ps51OnlyVariables -contains $name -and -not (Test-Ps51Guarded $n)) { $found.Add((New-Ps51Finding 'platform-variable' $n.Extent)) }
      }
      'CommandAst' {
        $cmd = $n.GetCommandName()
        if ($null -eq $cmd) { break }
        if ($script:Ps51OnlyCommands -contains $cmd) { $found.Add((New-Ps51Finding 'command-7-only' $n.Extent)) }
        $elements = @($n.CommandElements)
        for ($i = 1; $i -lt $elements.Count; $i++) {
          $el = $elements[$i]
          if ($el -isnot [System.Management.Automation.Language.CommandParameterAst]) { continue }
          $p = $el.ParameterName
          if ($script:Ps51ForEachNames -contains $cmd -and $p.Length -ge 2 -and 'Parallel'.StartsWith($p, [System.StringComparison]::OrdinalIgnoreCase)) { $found.Add((New-Ps51Finding 'foreach-parallel' $n.Extent)) }
          foreach ($row in $script:Ps51OnlyParameters) {
            if (($row[0] -eq '*' -or $row[0] -eq $cmd) -and $p.Length -ge $row[2].Length -and $row[1].StartsWith($p, [System.StringComparison]::OrdinalIgnoreCase)) { $found.Add((New-Ps51Finding ('parameter-' + $row[1]) $el.Extent)) }
          }
          if ('Encoding'.StartsWith($p, [System.StringComparison]::OrdinalIgnoreCase) -and $p.Length -ge 3) {
            $value = $el.Argument
            if ($null -eq $value -and $i + 1 -lt $elements.Count) { $value = $elements[$i + 1] }
            if ($value -is [System.Management.Automation.Language.StringConstantExpressionAst] -and $script:Ps51OnlyEncodings -contains $value.Value) { $found.Add((New-Ps51Finding 'encoding-7-only' $value.Extent)) }
          }
        }
      }
    }
  }
  return , ($found.ToArray())
}
