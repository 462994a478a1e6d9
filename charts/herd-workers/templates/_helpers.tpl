{{/*
Names, labels, the ServiceAccount name, the security contexts and the manifests Herd's charts
share come from the herd-lib library chart (charts/herd-lib, linked as charts/herd-lib here):
`include "herd-lib.fullname" .` and the like; see charts/herd-lib/README.md. Only helpers that
are this chart's alone belong in this file.
*/}}
