package httpapi

import (
	_ "embed"
	"net/http"
)

// OpenAPI is keyvend's OpenAPI 3.1 document (openapi.json in this package).
//
//go:embed openapi.json
var OpenAPI []byte

// serveOpenAPI serves GET /v1/openapi.json.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=300")
	_, _ = w.Write(OpenAPI)
}
