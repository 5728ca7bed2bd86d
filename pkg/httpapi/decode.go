package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"github.com/keyvend/keyvend/pkg/policy"
)

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 64 << 10

// decodeJSON reads r's body into v: application/json only, at most
// MaxBodyBytes, one JSON document, no unknown fields, and every key exact:
// no key twice in an object and no key that names a field only
// case-insensitively (checkKeys), so that what a proxy or a log reads in
// the body is what keyvend acts on.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) *Problem {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return newProblem(http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type", "send the body as Content-Type: application/json")
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return newProblem(http.StatusRequestEntityTooLarge, "too-large", "Request body too large", fmt.Sprintf("the body must be at most %d bytes", MaxBodyBytes))
		}
		return newProblem(http.StatusBadRequest, "bad-body", "Unreadable body", "the request body could not be read")
	}
	if p := checkKeys(data, reflect.TypeOf(v)); p != nil {
		return p
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return newProblem(http.StatusBadRequest, "invalid-json", "Invalid JSON", "the body must hold exactly one JSON object")
	}
	return nil
}

func jsonProblem(err error) *Problem {
	p := newProblem(http.StatusBadRequest, "invalid-json", "Invalid JSON", "")
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		p.Detail = fmt.Sprintf("the body is not valid JSON (at byte %d)", syn.Offset)
	case errors.As(err, &typ) && typ.Field == "":
		// The body itself (an array, a string) is not an object: there is
		// no field to name.
		p.Detail = "the body must be a JSON object"
	case errors.As(err, &typ):
		p.Detail = "a field has the wrong type"
		p.Errors = []policy.FieldError{{Field: typ.Field, Detail: "must be " + jsonKind(typ.Type)}}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		p.Detail = "the body is empty or truncated"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		p.Detail = "the body has a field keyvend does not know"
		p.Errors = []policy.FieldError{{Field: field, Detail: "unknown field"}}
	default:
		p.Detail = "the body could not be decoded"
	}
	return p
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Bool:
		return "a boolean"
	default:
		return "a number"
	}
}
