package httpapi

import (
	_ "embed"
	"net/http"
)

// OpenAPI is keyvend's OpenAPI 3.1 document (openapi.json in this package).
//
//go:embed openapi.json
var OpenAPI []byte

// openAPI serves GET /v1/openapi.json: the document as it is, cacheable.
func (a *api) openAPI(*call) (response, error) {
	return response{status: http.StatusOK, body: OpenAPI, header: http.Header{
		"Content-Type":  {"application/json"},
		"Cache-Control": {"max-age=300"},
	}}, nil
}
