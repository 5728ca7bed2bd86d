package httpapi

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/keyvend/keyvend/pkg/policy"
)

// checkKeys walks the first JSON value of data over its token stream,
// guided by t (the type decodeJSON decodes into) the way encoding/json
// would go, and returns a problem for the first key that is:
//
//   - given twice in one object, at any depth (encoding/json keeps the
//     last; another parser may keep the first);
//   - not exactly the JSON name of a field of the struct the object decodes
//     into: encoding/json matches names case-insensitively, with Unicode
//     folding (User, GRANTS, reaſon with U+017F, K with the Kelvin sign
//     U+212A all find a field), so such a key is refused, naming it and
//     the field it resembles, as is a key that names no field at all.
//
// Values decoded by a json.Unmarshaler, into an interface or a map are
// checked for duplicate keys throughout. A body that is not one well-formed
// JSON value yields nil: json.Decoder reports it as before.
func checkKeys(data []byte, t reflect.Type) *Problem {
	c := keyChecker{dec: json.NewDecoder(bytes.NewReader(data))}
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if err := c.value(t, ""); err != nil || c.problem == nil {
		return nil
	}
	return c.problem
}

type keyChecker struct {
	dec     *json.Decoder
	problem *Problem // the first bad key
}

func (c *keyChecker) fail(slug, detail, field, fieldDetail string) {
	if c.problem != nil {
		return
	}
	p := newProblem(http.StatusBadRequest, slug, "Invalid JSON", detail)
	p.Errors = []policy.FieldError{{Field: field, Detail: fieldDetail}}
	c.problem = p
}

// value checks the next JSON value, which decodes into t (nil: opaque,
// checked for duplicate keys only). It returns the token stream's error.
func (c *keyChecker) value(t reflect.Type, path string) error {
	tok, err := c.dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t.Kind() == reflect.Interface || unmarshals(t)) {
		t = nil
	}
	switch {
	case d == '{' && t == nil:
		return c.object(path, nil, nil)
	case d == '{' && t.Kind() == reflect.Struct:
		return c.object(path, jsonFields(t), nil)
	case d == '{' && t.Kind() == reflect.Map:
		return c.object(path, nil, t.Elem())
	case d == '[' && t == nil:
		return c.array(path, nil)
	case d == '[' && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		return c.array(path, t.Elem())
	default:
		// The wrong kind of value for t: json.Decoder refuses it.
		return c.skipFrom(1)
	}
}

// object checks the members of an object whose '{' was read. fields are
// the struct's JSON names (nil: any key is allowed; elem is the type of
// every value, nil for opaque).
func (c *keyChecker) object(path string, fields map[string]reflect.Type, elem reflect.Type) error {
	seen := map[string]bool{}
	for c.dec.More() {
		tok, err := c.dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		at := key
		if path != "" {
			at = path + "." + key
		}
		if seen[key] {
			c.fail("invalid-json", "the body has a key more than once", at, "duplicate key")
		}
		seen[key] = true
		if fields == nil {
			if err := c.value(elem, at); err != nil {
				return err
			}
			continue
		}
		if ft, ok := fields[key]; ok {
			if err := c.value(ft, at); err != nil {
				return err
			}
			continue
		}
		if name, ok := foldMatch(fields, key); ok {
			c.fail("invalid-json", "the body has a key that matches a field only case-insensitively; keys are case-sensitive",
				at, fmt.Sprintf("unknown field; did you mean %q?", name))
		} else {
			// As json.Decoder's DisallowUnknownFields words it (jsonProblem).
			c.fail("invalid-json", "the body has a field keyvend does not know", key, "unknown field")
		}
		if err := c.skip(); err != nil {
			return err
		}
	}
	_, err := c.dec.Token() // '}'
	return err
}

func (c *keyChecker) array(path string, elem reflect.Type) error {
	for i := 0; c.dec.More(); i++ {
		if err := c.value(elem, path+"["+strconv.Itoa(i)+"]"); err != nil {
			return err
		}
	}
	_, err := c.dec.Token() // ']'
	return err
}

// skip reads past the next value without recursion: a value keyvend
// refuses anyway may be deeply nested.
func (c *keyChecker) skip() error { return c.skipFrom(0) }

// skipFrom reads past the rest of a value depth levels deep into it.
func (c *keyChecker) skipFrom(depth int) error {
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth <= 0 {
			return nil
		}
	}
}

// foldMatch reports the field key names case-insensitively (Unicode simple
// folding, which is encoding/json's matching).
func foldMatch(fields map[string]reflect.Type, key string) (string, bool) {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return name, true
		}
	}
	return "", false
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// unmarshals reports whether t decodes itself: its keys are its own business,
// so checkKeys only looks for duplicates in it.
func unmarshals(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return t.Implements(unmarshalerType) || pt.Implements(unmarshalerType) ||
		t.Implements(textUnmarshalerType) || pt.Implements(textUnmarshalerType)
}

var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// jsonFields returns the JSON names of the fields encoding/json decodes
// into for struct type t, with their types: exported fields by their tag
// name or Go name, "-" skipped, and the fields of embedded structs without
// a tag name promoted (the shallowest wins; this is all keyvend's request
// types need of encoding/json's rules).
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	out := map[string]reflect.Type{}
	depthOf := map[string]int{}
	var walk func(t reflect.Type, depth int, visited map[reflect.Type]bool)
	walk = func(t reflect.Type, depth int, visited map[reflect.Type]bool) {
		if visited[t] {
			return
		}
		visited[t] = true
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			ft := f.Type
			if f.Anonymous && name == "" {
				et := ft
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if et.Kind() == reflect.Struct {
					walk(et, depth+1, visited)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if d, ok := depthOf[name]; !ok || depth < d {
				out[name], depthOf[name] = ft, depth
			}
		}
	}
	walk(t, 0, map[reflect.Type]bool{})
	fieldCache.Store(t, out)
	return out
}
