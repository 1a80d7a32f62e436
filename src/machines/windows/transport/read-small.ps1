# readSmall: a whole file, if it is at most max bytes. Inputs: path, max.
# States: "ok", "missing", "toolarge <bytes>". Read-only, idempotent.
$In = Read-RubiconSpec $RubiconSpec
$f = $In['path']
if (-not [IO.File]::Exists($f)) {
  Write-RubiconState 'missing'
} else {
  $len = (New-Object IO.FileInfo $f).Length
  if ($len -gt [long]$In['max']) {
    Write-RubiconState ('toolarge ' + $len)
  } else {
    $b = [IO.File]::ReadAllBytes($f)
    Write-RubiconOutput $b $false (New-Object byte[] 0) $false
    Write-RubiconState 'ok'
  }
}
