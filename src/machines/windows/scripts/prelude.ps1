# Rubicon Windows script prelude.
# Version: 1
#
# Contract: prepended by src/machines/windows/scripts.ts to every script a
# transport sends (a script sent with -EncodedCommand cannot dot-source a
# file, so the build step concatenates: param block, this prelude, the
# script, the one line that calls Invoke-RubiconEntry). It only defines
# functions and sets preferences; it touches nothing.
#
# Runs on Windows PowerShell 5.1 and PowerShell 7 (test/windows/ps51-guard.ps1
# refuses syntax and parameters 5.1 lacks). Kept ASCII: Run Command and
# some consoles mangle anything else.
#
# The output protocol (what parseScriptOutput in scripts.ts checks):
#
#   RUBICON-BEGIN v1 <script> <scriptVersion> <sha256 of the argument text>
#   {...}                      zero or more streamed records, one JSON object a line
#   {"ok":...}                 the result, always the last payload line
#   RUBICON-RESULT v1 <sha256hex> <bytes>
#
# Payload lines are the lines between BEGIN and RESULT that start with '{'.
# The hash and byte count cover every payload line plus its "\n", in order.
# Any other line there (a WARNING: from a cmdlet, Write-Host text) is noise
# and is ignored by the parser. Every JSON text escapes each character
# outside printable ASCII as \uXXXX, so stdout is pure ASCII and no console
# code page or transport re-encoding can change a byte.

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$ConfirmPreference = 'None'
$VerbosePreference = 'SilentlyContinue'
$InformationPreference = 'SilentlyContinue'
try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { $null = $_ }

$script:RubiconOut = $null
$script:RubiconIsWindows = ([System.Environment]::OSVersion.Platform -eq [System.PlatformID]::Win32NT)
$script:RubiconEmptySha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

# ---------------------------------------------------------------- errors

function New-RubiconError {
  # A terminating error with a stable code. The entry turns it into the
  # error result {code, message, details}. Messages name the item at fault
  # and never carry secrets.
  param([Parameter(Mandatory = $true)][string]$Code, [Parameter(Mandatory = $true)][string]$Message, $Details = $null)
  $e = New-Object System.Exception $Message
  $e.Data['rubicon.code'] = $Code
  if ($null -ne $Details) { $e.Data['rubicon.details'] = $Details }
  return $e
}

function Get-RubiconErrorInfo {
  # Pure: the stable {code, message, details, where} of any caught error.
  param($ErrorRecord)
  $ex = $null
  if ($ErrorRecord -is [System.Management.Automation.ErrorRecord]) { $ex = $ErrorRecord.Exception } elseif ($ErrorRecord -is [System.Exception]) { $ex = $ErrorRecord }
  $where = $null
  if ($ErrorRecord -is [System.Management.Automation.ErrorRecord] -and $null -ne $ErrorRecord.InvocationInfo -and $ErrorRecord.InvocationInfo.ScriptLineNumber -gt 0) {
    $where = 'line ' + $ErrorRecord.InvocationInfo.ScriptLineNumber
  }
  $walk = $ex
  while ($null -ne $walk) {
    if ($walk.Data.Contains('rubicon.code')) {
      $details = $null
      if ($walk.Data.Contains('rubicon.details')) { $details = $walk.Data['rubicon.details'] }
      return [ordered]@{ code = [string]$walk.Data['rubicon.code']; message = $walk.Message; details = $details; where = $where }
    }
    $walk = $walk.InnerException
  }
  $code = 'UNEXPECTED'
  $inner = $ex
  while ($null -ne $inner -and $null -ne $inner.InnerException -and ($inner -is [System.Management.Automation.MethodInvocationException] -or $inner -is [System.Management.Automation.ActionPreferenceStopException])) { $inner = $inner.InnerException }
  if ($inner -is [System.UnauthorizedAccessException]) { $code = 'ACCESS_DENIED' }
  elseif ($inner -is [System.IO.FileNotFoundException] -or $inner -is [System.IO.DirectoryNotFoundException] -or $inner -is [System.Management.Automation.ItemNotFoundException]) { $code = 'PATH_NOT_FOUND' }
  elseif ($inner -is [System.Management.Automation.CommandNotFoundException]) { $code = 'COMMAND_UNAVAILABLE' }
  $message = 'unexpected error'
  if ($null -ne $inner) { $message = $inner.Message }
  return [ordered]@{ code = $code; message = $message; details = $null; where = $where }
}

# ---------------------------------------------------------------- JSON out

function ConvertTo-RubiconJsonString {
  # Pure: a JSON string literal, ASCII only (every character outside
  # 0x20-0x7E is \uXXXX; '"' and '\' are escaped).
  param([string]$Text)
  if ($null -eq $Text) { return 'null' }
  if ($Text -notmatch '[^\x20-\x21\x23-\x5B\x5D-\x7E]') { return '"' + $Text + '"' }
  $escaped = [regex]::Replace($Text, '[^\x20-\x21\x23-\x5B\x5D-\x7E]', {
      param($m)
      $c = [int][char]$m.Value
      if ($c -eq 0x22) { return '\"' }
      if ($c -eq 0x5C) { return '\\' }
      if ($c -eq 0x0A) { return '\n' }
      if ($c -eq 0x0D) { return '\r' }
      if ($c -eq 0x09) { return '\t' }
      return ('\u{0:x4}' -f $c)
    })
  return '"' + $escaped + '"'
}

function ConvertTo-RubiconIsoTime {
  # Pure: a date as ISO 8601 UTC with milliseconds, like JavaScript's toISOString.
  param($Value)
  if ($Value -is [System.DateTimeOffset]) { $Value = $Value.UtcDateTime }
  $utc = ([datetime]$Value).ToUniversalTime()
  return $utc.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", [System.Globalization.CultureInfo]::InvariantCulture)
}

function ConvertTo-RubiconJson {
  # Pure: the same JSON text on Windows PowerShell 5.1 and PowerShell 7.
  # ConvertTo-Json is not used: 5.1 truncates silently at -Depth, writes
  # dates as \/Date(ms)\/, unwraps one-element arrays and wraps some arrays
  # as {"value":[...],"Count":n}; 7 differs in escaping. Here: arrays stay
  # arrays, dates are ISO strings, enums their names, dictionaries keep
  # their order, and a type it does not know is an INTERNAL error (scripts
  # shape their results explicitly).
  param($Value, [int]$Depth = 0)
  if ($Depth -gt 40) { throw (New-RubiconError 'INTERNAL' 'result is nested deeper than 40 levels') }
  if ($null -eq $Value) { return 'null' }
  if ($Value -is [System.Management.Automation.PSObject] -and $Value.PSObject.BaseObject -isnot [System.Management.Automation.PSCustomObject]) { $Value = $Value.PSObject.BaseObject }
  if ($Value -is [string]) { return (ConvertTo-RubiconJsonString $Value) }
  if ($Value -is [char]) { return (ConvertTo-RubiconJsonString ([string]$Value)) }
  if ($Value -is [bool]) { if ($Value) { return 'true' } else { return 'false' } }
  if ($Value -is [System.Enum]) { return (ConvertTo-RubiconJsonString $Value.ToString()) }
  if ($Value -is [int] -or $Value -is [long] -or $Value -is [int16] -or $Value -is [byte] -or $Value -is [sbyte] -or $Value -is [uint16] -or $Value -is [uint32] -or $Value -is [uint64]) {
    return $Value.ToString([System.Globalization.CultureInfo]::InvariantCulture)
  }
  if ($Value -is [double] -or $Value -is [single]) {
    if ([double]::IsNaN($Value) -or [double]::IsInfinity($Value)) { throw (New-RubiconError 'INTERNAL' 'result contains a number that is NaN or infinite') }
    return ([double]$Value).ToString('R', [System.Globalization.CultureInfo]::InvariantCulture)
  }
  if ($Value -is [decimal]) { return $Value.ToString([System.Globalization.CultureInfo]::InvariantCulture) }
  if ($Value -is [datetime] -or $Value -is [System.DateTimeOffset]) { return (ConvertTo-RubiconJsonString (ConvertTo-RubiconIsoTime $Value)) }
  if ($Value -is [guid]) { return (ConvertTo-RubiconJsonString $Value.ToString()) }
  if ($Value -is [System.Collections.IDictionary]) {
    $parts = New-Object System.Collections.Generic.List[string]
    foreach ($k in $Value.Keys) {
      $parts.Add((ConvertTo-RubiconJsonString ([string]$k)) + ':' + (ConvertTo-RubiconJson $Value[$k] ($Depth + 1)))
    }
    return '{' + ($parts -join ',') + '}'
  }
  if ($Value -is [System.Management.Automation.PSCustomObject] -or ($Value -is [System.Management.Automation.PSObject])) {
    $parts = New-Object System.Collections.Generic.List[string]
    foreach ($p in $Value.PSObject.Properties) {
      $parts.Add((ConvertTo-RubiconJsonString $p.Name) + ':' + (ConvertTo-RubiconJson $p.Value ($Depth + 1)))
    }
    return '{' + ($parts -join ',') + '}'
  }
  if ($Value -is [System.Collections.IEnumerable]) {
    $parts = New-Object System.Collections.Generic.List[string]
    foreach ($item in $Value) { $parts.Add((ConvertTo-RubiconJson $item ($Depth + 1))) }
    return '[' + ($parts -join ',') + ']'
  }
  throw (New-RubiconError 'INTERNAL' ('result contains a value of type ' + $Value.GetType().FullName + ' that has no JSON form'))
}

# ---------------------------------------------------------------- JSON in

function ConvertFrom-RubiconJson {
  # Pure: parses JSON into ordered dictionaries, object[] arrays, strings,
  # bools, longs and doubles. ConvertFrom-Json is not used: PowerShell 7
  # turns ISO date strings into DateTime and 5.1 caps input at 2 MB and
  # returns different types, so the same argument would not mean the same
  # thing on both. A token regex does the scanning in .NET.
  param([Parameter(Mandatory = $true)][AllowEmptyString()][string]$Text)
  $pattern = '\G[ \t\r\n]*(?:(?<p>[{}\[\]:,])|(?<s>"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")|(?<n>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)|(?<w>true|false|null))'
  $tokens = New-Object System.Collections.Generic.List[object]
  $pos = 0
  $rx = New-Object System.Text.RegularExpressions.Regex $pattern
  while ($true) {
    $m = $rx.Match($Text, $pos)
    if (-not $m.Success) { break }
    $pos = $m.Index + $m.Length
    $tokens.Add($m)
  }
  if ($Text.Substring($pos).Trim(" `t`r`n".ToCharArray()).Length -gt 0) { throw (New-RubiconError 'ARGS_INVALID' ('argument JSON is not valid near character ' + $pos)) }
  $state = @{ i = 0 }
  $value = ConvertFrom-RubiconJsonToken $tokens $state 0
  if ($state.i -ne $tokens.Count) { throw (New-RubiconError 'ARGS_INVALID' 'argument JSON has text after its end') }
  return , $value
}

function ConvertFrom-RubiconJsonToken {
  param($Tokens, $State, [int]$Depth)
  if ($Depth -gt 64) { throw (New-RubiconError 'ARGS_INVALID' 'argument JSON is nested deeper than 64 levels') }
  if ($State.i -ge $Tokens.Count) { throw (New-RubiconError 'ARGS_INVALID' 'argument JSON ends early') }
  $t = $Tokens[$State.i]
  $State.i++
  if ($t.Groups['s'].Success) { return (ConvertFrom-RubiconJsonStringToken $t.Groups['s'].Value) }
  if ($t.Groups['n'].Success) {
    $n = $t.Groups['n'].Value
    $asLong = 0L
    if ($n -notmatch '[.eE]' -and [long]::TryParse($n, [System.Globalization.NumberStyles]::AllowLeadingSign, [System.Globalization.CultureInfo]::InvariantCulture, [ref]$asLong)) { return $asLong }
    return [double]::Parse($n, [System.Globalization.CultureInfo]::InvariantCulture)
  }
  if ($t.Groups['w'].Success) {
    switch ($t.Groups['w'].Value) { 'true' { return $true } 'false' { return $false } default { return $null } }
  }
  $p = $t.Groups['p'].Value
  if ($p -eq '{') {
    $obj = [ordered]@{}
    if ($State.i -lt $Tokens.Count -and $Tokens[$State.i].Groups['p'].Value -eq '}') { $State.i++; return $obj }
    while ($true) {
      if ($State.i -ge $Tokens.Count -or -not $Tokens[$State.i].Groups['s'].Success) { throw (New-RubiconError 'ARGS_INVALID' 'argument JSON has an object key that is not a string') }
      $key = ConvertFrom-RubiconJsonStringToken $Tokens[$State.i].Groups['s'].Value
      $State.i++
      if ($State.i -ge $Tokens.Count -or $Tokens[$State.i].Groups['p'].Value -ne ':') { throw (New-RubiconError 'ARGS_INVALID' ('argument JSON lacks ":" after key "' + $key + '"')) }
      $State.i++
      $v = ConvertFrom-RubiconJsonToken $Tokens $State ($Depth + 1)
      $obj[$key] = $v
      if ($State.i -ge $Tokens.Count) { throw (New-RubiconError 'ARGS_INVALID' 'argument JSON ends inside an object') }
      $sep = $Tokens[$State.i].Groups['p'].Value
      $State.i++
      if ($sep -eq '}') { return $obj }
      if ($sep -ne ',') { throw (New-RubiconError 'ARGS_INVALID' 'argument JSON lacks "," between object members') }
    }
  }
  if ($p -eq '[') {
    $list = New-Object System.Collections.Generic.List[object]
    if ($State.i -lt $Tokens.Count -and $Tokens[$State.i].Groups['p'].Value -eq ']') { $State.i++; return , ([object[]]@()) }
    while ($true) {
      $v = ConvertFrom-RubiconJsonToken $Tokens $State ($Depth + 1)
      $list.Add($v)
      if ($State.i -ge $Tokens.Count) { throw (New-RubiconError 'ARGS_INVALID' 'argument JSON ends inside an array') }
      $sep = $Tokens[$State.i].Groups['p'].Value
      $State.i++
      if ($sep -eq ']') { return , ($list.ToArray()) }
      if ($sep -ne ',') { throw (New-RubiconError 'ARGS_INVALID' 'argument JSON lacks "," between array items') }
    }
  }
  throw (New-RubiconError 'ARGS_INVALID' ('argument JSON has an unexpected "' + $p + '"'))
}

function ConvertFrom-RubiconJsonStringToken {
  param([string]$Token)
  $body = $Token.Substring(1, $Token.Length - 2)
  if ($body.IndexOf('\') -lt 0) { return $body }
  return [regex]::Replace($body, '\\(["\\/bfnrt]|u[0-9a-fA-F]{4})', {
      param($m)
      $c = $m.Groups[1].Value
      switch -CaseSensitive ($c) {
        '"' { return '"' } '\' { return '\' } '/' { return '/' }
        'b' { return [string][char]8 } 'f' { return [string][char]12 } 'n' { return "`n" } 'r' { return "`r" } 't' { return "`t" }
        default { return [string][char][Convert]::ToInt32($c.Substring(1), 16) }
      }
    })
}

function ConvertFrom-RubiconArgs {
  # The one argument: base64 of the UTF-8 JSON of an object.
  param([AllowEmptyString()][string]$Encoded)
  if ([string]::IsNullOrEmpty($Encoded)) { return [ordered]@{} }
  try { $bytes = [Convert]::FromBase64String($Encoded) } catch { throw (New-RubiconError 'ARGS_INVALID' 'the argument is not base64') }
  try { $text = (New-Object System.Text.UTF8Encoding $false, $true).GetString($bytes) } catch { throw (New-RubiconError 'ARGS_INVALID' 'the argument is not UTF-8') }
  $value = ConvertFrom-RubiconJson $text
  if ($value -isnot [System.Collections.IDictionary]) { throw (New-RubiconError 'ARGS_INVALID' 'the argument must be a JSON object') }
  return $value
}

function Get-RubiconArg {
  # A named argument, checked: -Type string|bool|int|array|object; a
  # missing required one or a wrong type is ARGS_INVALID naming the field.
  # An array is written to the pipeline item by item: call it as
  # @(Get-RubiconArg $a 'x' -Type array).
  param([Parameter(Mandatory = $true)]$Args0, [Parameter(Mandatory = $true)][string]$Name, [string]$Type = 'string', [switch]$Required, $Default = $null)
  $present = $Args0.Contains($Name)
  if (-not $present -or $null -eq $Args0[$Name]) {
    if ($Required) { throw (New-RubiconError 'ARGS_INVALID' ('argument "' + $Name + '" is required')) }
    if ($Type -eq 'array') { if ($null -ne $Default) { return $Default } else { return } }
    return $Default
  }
  $v = $Args0[$Name]
  $ok = $true
  switch ($Type) {
    'string' { $ok = $v -is [string] -and ($v.Length -gt 0 -or -not $Required) }
    'bool' { $ok = $v -is [bool] }
    'int' { $ok = $v -is [long] }
    'array' { $ok = $v -is [object[]] }
    'object' { $ok = $v -is [System.Collections.IDictionary] }
  }
  if (-not $ok) { throw (New-RubiconError 'ARGS_INVALID' ('argument "' + $Name + '" must be ' + $Type)) }
  if ($Type -eq 'array') { return $v }
  if ($Type -eq 'int') { return [long]$v }
  return $v
}

# ---------------------------------------------------------------- output

function New-RubiconOutput {
  param([System.IO.TextWriter]$Writer)
  return @{ writer = $Writer; sha = [System.Security.Cryptography.SHA256]::Create(); bytes = 0L; records = 0L; utf8 = (New-Object System.Text.UTF8Encoding $false) }
}

function Write-RubiconPayloadLine {
  param([Parameter(Mandatory = $true)][string]$Json)
  $o = $script:RubiconOut
  $line = $Json + "`n"
  $b = $o.utf8.GetBytes($line)
  $null = $o.sha.TransformBlock($b, 0, $b.Length, $null, 0)
  $o.bytes += $b.Length
  $o.writer.Write($line)
}

function Write-RubiconRecord {
  # Streams one record (an object, or a ready JSON object text) before the result.
  param([Parameter(Mandatory = $true)]$Record)
  if ($Record -is [string]) { Write-RubiconPayloadLine $Record } else { Write-RubiconPayloadLine (ConvertTo-RubiconJson $Record) }
  $script:RubiconOut.records++
}

function Get-RubiconSha256Hex {
  param([byte[]]$Bytes)
  $sha = [System.Security.Cryptography.SHA256]::Create()
  try { $h = $sha.ComputeHash($Bytes) } finally { $sha.Dispose() }
  return ([System.BitConverter]::ToString($h) -replace '-', '').ToLowerInvariant()
}

function Get-RubiconHostInfo {
  $edition = 'Desktop'
  if ($PSVersionTable.ContainsKey('PSEdition')) { $edition = [string]$PSVersionTable['PSEdition'] }
  return [ordered]@{
    computerName = [System.Environment]::MachineName
    user = [System.Environment]::UserName
    psVersion = $PSVersionTable.PSVersion.ToString()
    psEdition = $edition
    os = [System.Environment]::OSVersion.VersionString
    isWindows = $script:RubiconIsWindows
  }
}

function Invoke-RubiconEntry {
  # Runs one script body and writes the protocol above. Returns the exit
  # code (0 ok, 1 error result); the generated last line of the script text
  # passes it to exit. The body gets the parsed arguments and must output
  # exactly one dictionary, its data: anything else it leaks into the
  # pipeline is an INTERNAL error (named by type, never by content).
  param(
    [Parameter(Mandatory = $true)][string]$Script,
    [Parameter(Mandatory = $true)][int]$Version,
    [AllowEmptyString()][string]$EncodedArgs = '',
    [Parameter(Mandatory = $true)][string]$Body,
    [System.IO.TextWriter]$Writer = $null
  )
  if ($null -eq $Writer) { $Writer = [Console]::Out }
  $script:RubiconOut = New-RubiconOutput $Writer
  $argsHash = Get-RubiconSha256Hex ((New-Object System.Text.UTF8Encoding $false).GetBytes([string]$EncodedArgs))
  $Writer.Write('RUBICON-BEGIN v1 ' + $Script + ' ' + $Version + ' ' + $argsHash + "`n")
  $started = [DateTime]::UtcNow
  $exitCode = 0
  $result = $null
  try {
    $a = ConvertFrom-RubiconArgs $EncodedArgs
    $out = @(& $Body $a)
    if ($out.Count -ne 1 -or $out[0] -isnot [System.Collections.IDictionary]) {
      $types = @($out | ForEach-Object { if ($null -eq $_) { 'null' } else { $_.GetType().Name } }) -join ', '
      throw (New-RubiconError 'INTERNAL' ('script ' + $Script + ' produced ' + $out.Count + ' pipeline outputs (' + $types + ') instead of one result dictionary'))
    }
    $result = [ordered]@{ ok = $true; script = $Script; scriptVersion = $Version; host = (Get-RubiconHostInfo); startedAt = (ConvertTo-RubiconIsoTime $started); finishedAt = (ConvertTo-RubiconIsoTime ([DateTime]::UtcNow)); records = $script:RubiconOut.records; data = $out[0] }
    $json = ConvertTo-RubiconJson $result
  } catch {
    $exitCode = 1
    $info = Get-RubiconErrorInfo $_
    $result = [ordered]@{ ok = $false; script = $Script; scriptVersion = $Version; host = (Get-RubiconHostInfo); startedAt = (ConvertTo-RubiconIsoTime $started); finishedAt = (ConvertTo-RubiconIsoTime ([DateTime]::UtcNow)); records = $script:RubiconOut.records; error = $info }
    try { $json = ConvertTo-RubiconJson $result } catch {
      $result.error = [ordered]@{ code = $info.code; message = $info.message; details = $null; where = $info.where }
      $json = ConvertTo-RubiconJson $result
    }
  }
  Write-RubiconPayloadLine $json
  $o = $script:RubiconOut
  $null = $o.sha.TransformFinalBlock((New-Object byte[] 0), 0, 0)
  $hex = ([System.BitConverter]::ToString($o.sha.Hash) -replace '-', '').ToLowerInvariant()
  $Writer.Write('RUBICON-RESULT v1 ' + $hex + ' ' + $o.bytes + "`n")
  $Writer.Flush()
  return $exitCode
}

# ---------------------------------------------------------------- paths

function ConvertTo-RubiconLongPath {
  # Pure: the form of an absolute path that Windows PowerShell 5.1's .NET
  # Framework opens past MAX_PATH: \\?\C:\... and \\?\UNC\server\share\...
  # Already-prefixed paths and every path on a non-Windows system are
  # returned unchanged.
  param([Parameter(Mandatory = $true)][string]$Path, [bool]$Windows = $script:RubiconIsWindows)
  if (-not $Windows) { return $Path }
  if ($Path.StartsWith('\\?\') -or $Path.StartsWith('\\.\')) { return $Path }
  $p = $Path.Replace('/', '\')
  if ($p.StartsWith('\\')) { return '\\?\UNC\' + $p.Substring(2) }
  if ($p -match '^[A-Za-z]:\\') { return '\\?\' + $p }
  throw (New-RubiconError 'ARGS_INVALID' ('path "' + $Path + '" is not absolute'))
}

function ConvertFrom-RubiconLongPath {
  # Pure: the inverse of ConvertTo-RubiconLongPath, for messages and results.
  param([Parameter(Mandatory = $true)][string]$Path)
  if ($Path.StartsWith('\\?\UNC\')) { return '\\' + $Path.Substring(8) }
  if ($Path.StartsWith('\\?\')) { return $Path.Substring(4) }
  return $Path
}

function Get-RubiconIoErrorCode {
  # Pure: the stable code of an I/O exception. Windows reports a sharing
  # violation as HRESULT 0x80070020 (ERROR_SHARING_VIOLATION, 32) and a lock
  # violation as 0x80070021 (ERROR_LOCK_VIOLATION, 33); .NET on Linux
  # emulates FileShare with advisory locks and reports EWOULDBLOCK (11).
  param($Exception)
  $e = $Exception
  while ($null -ne $e -and $null -ne $e.InnerException -and $e -is [System.Management.Automation.MethodInvocationException]) { $e = $e.InnerException }
  if ($e -is [System.UnauthorizedAccessException]) { return 'ACCESS_DENIED' }
  if ($e -is [System.IO.FileNotFoundException] -or $e -is [System.IO.DirectoryNotFoundException]) { return 'VANISHED' }
  if ($e -is [System.IO.PathTooLongException]) { return 'PATH_TOO_LONG' }
  if ($e -is [System.IO.IOException]) {
    $hr = $e.HResult -band 0xFFFF
    if ($hr -eq 32 -or $hr -eq 33) { return 'LOCKED' }
    if (-not $script:RubiconIsWindows -and $e.HResult -eq 11) { return 'LOCKED' }
    return 'IO_ERROR'
  }
  return 'IO_ERROR'
}

function Test-RubiconPathInside {
  # Pure: true when $Child is $Parent or lies inside it (case-insensitive on Windows).
  param([string]$Child, [string]$Parent, [bool]$Windows = $script:RubiconIsWindows)
  $sep = '/'
  if ($Windows) { $sep = '\' }
  $c = $Child.TrimEnd('\', '/') + $sep
  $p = $Parent.TrimEnd('\', '/') + $sep
  if ($Windows) { $c = $c.Replace('/', '\').ToLowerInvariant(); $p = $p.Replace('/', '\').ToLowerInvariant() }
  return $c.StartsWith($p)
}

# ---------------------------------------------------------------- natives

function Invoke-RubiconNative {
  # Runs a program and returns {exitCode, output (string[])} with stderr
  # merged into output. With ErrorActionPreference Stop, Windows PowerShell
  # 5.1 turns the first redirected stderr line into a terminating error,
  # so the call runs with Continue. A missing program is
  # COMMAND_UNAVAILABLE. Arguments are passed as an array; none may
  # contain a double quote (5.1 passes those wrongly) and none ends in a
  # backslash (it would escape the closing quote).
  param([Parameter(Mandatory = $true)][string]$FilePath, [string[]]$ArgumentList = @())
  foreach ($a in $ArgumentList) {
    if ($a.Contains('"')) { throw (New-RubiconError 'ARGS_INVALID' ('an argument to ' + $FilePath + ' contains a double quote: ' + $a)) }
  }
  if ($null -eq (Get-Command -Name $FilePath -ErrorAction SilentlyContinue)) {
    throw (New-RubiconError 'COMMAND_UNAVAILABLE' ($FilePath + ' is not installed or not on PATH'))
  }
  $ErrorActionPreference = 'Continue'
  $global:LASTEXITCODE = 0
  $lines = @(& $FilePath @ArgumentList 2>&1 | ForEach-Object { [string]$_ })
  $code = $global:LASTEXITCODE
  if ($null -eq $code) { $code = 0 }
  return [pscustomobject]@{ exitCode = [int]$code; output = $lines }
}

function Read-RubiconTextFile {
  # The text of a tool's log or save file: UTF-16LE when it has the BOM or
  # looks like it (robocopy /UNILOG, icacls /save), else UTF-8.
  param([Parameter(Mandatory = $true)][string]$Path)
  $bytes = [System.IO.File]::ReadAllBytes($Path)
  if ($bytes.Length -ge 2 -and $bytes[0] -eq 0xFF -and $bytes[1] -eq 0xFE) { return [System.Text.Encoding]::Unicode.GetString($bytes, 2, $bytes.Length - 2) }
  if ($bytes.Length -ge 3 -and $bytes[0] -eq 0xEF -and $bytes[1] -eq 0xBB -and $bytes[2] -eq 0xBF) { return [System.Text.Encoding]::UTF8.GetString($bytes, 3, $bytes.Length - 3) }
  if ($bytes.Length -ge 2 -and $bytes[1] -eq 0) { return [System.Text.Encoding]::Unicode.GetString($bytes) }
  return [System.Text.Encoding]::UTF8.GetString($bytes)
}
