//go:build tools

// Package tools pins the command build.sh compiles: h2spec, the HTTP/2 conformance suite the
// native data path is tested against (runtime/test/native-h2spec.test.ts).
package tools

import _ "github.com/summerwind/h2spec/cmd/h2spec"
