# Stand-in for the Windows service commands, for PowerShell 7 on Linux
# standing in for a Windows Server in test/e2e/windows-story.test.ts. Never
# loaded on a real server: it is found only through the PSModulePath the
# stand-in's login shell sets (test/e2e/windows-story.test.ts).
@{
  RootModule = 'RubiconWindowsStandIn.psm1'
  ModuleVersion = '1.0.0'
  GUID = '6f0b7a8e-2f4c-4d55-9a51-3e0e2f1f9c01'
  Author = 'Rubicon tests'
  Description = 'Win32_Service / ServiceController / Win32_ShadowCopy / SmbMapping stand-in backed by JSON files (test only)'
  PowerShellVersion = '7.0'
  FunctionsToExport = @('Get-CimInstance', 'Invoke-CimMethod', 'Remove-CimInstance', 'Get-Service', 'Stop-Service', 'Set-Service', 'New-SmbMapping', 'Get-SmbMapping', 'Remove-SmbMapping')
  CmdletsToExport = @()
  VariablesToExport = @()
  AliasesToExport = @()
}
