package main

// A small IAM policy evaluator for the escalation tests: identity policies
// only (no principals, no resource policies, no SCPs, no sessions), one
// account. It is deliberately conservative where it is incomplete:
//
//   - Action/NotAction match as case-insensitive globs ('*' any run, '?'
//     one character); Resource/NotResource as case-sensitive globs.
//   - Conditions: StringEquals, StringNotEquals, StringLike, StringNotLike,
//     and each of them after ForAllValues: or ForAnyValue: (multi-valued
//     keys such as aws:TagKeys). Condition keys are case-insensitive. A
//     negated operator holds when the key is absent; ForAllValues holds
//     when every value does (so when the key is absent or empty);
//     ForAnyValue holds when some value does (so never when the key is
//     absent or empty). A negated operator under a set qualifier tests each
//     value: ForAnyValue:StringNotLike holds when some value matches none
//     of the patterns.
//   - Bool: the request value "true" or "false" (case-insensitive)
//     against the condition's; an absent key does not match. A condition
//     value that is not a boolean is UNKNOWN.
//   - Any other operator, an …IfExists suffix, a policy variable (${…}) or
//     several request values for a single-valued operator is UNKNOWN: an
//     Allow statement with an unknown condition does not apply, a Deny
//     statement with one does.
//   - Explicit Deny wins over Allow; without an applicable Allow the
//     request is implicitly denied.

import (
	"fmt"
	"strings"
)

// Request is one API call as IAM sees it.
type Request struct {
	Action   string
	Resource string
	Context  map[string][]string // condition keys (any case) to values
}

// Decision is the outcome and the statement that decided it.
type Decision struct {
	Allowed  bool
	Explicit bool   // an explicit Deny decided
	Sid      string // the deciding statement ("" for an implicit deny)
}

func (d Decision) String() string {
	switch {
	case d.Allowed && d.Sid == "":
		return "ALLOWED (statement without Sid)"
	case d.Allowed:
		return "ALLOWED (" + d.Sid + ")"
	case d.Explicit:
		return "DENIED (explicit " + d.Sid + ")"
	default:
		return "DENIED (no Allow)"
	}
}

// Statement is a parsed policy statement.
type Statement struct {
	Sid                     string
	Effect                  string
	Actions, NotActions     []string
	Resources, NotResources []string
	Conditions              map[string]map[string][]string
}

// ParseStatements reads the Statement list of a resolved policy document.
func ParseStatements(doc map[string]any) ([]Statement, error) {
	raw, ok := doc["Statement"]
	if !ok {
		return nil, fmt.Errorf("policy document without Statement")
	}
	var list []any
	switch v := raw.(type) {
	case []any:
		list = v
	case map[string]any:
		list = []any{v}
	default:
		return nil, fmt.Errorf("Statement is %T", raw)
	}
	var out []Statement
	for i, x := range list {
		m, ok := x.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("statement %d is %T", i, x)
		}
		s := Statement{Conditions: map[string]map[string][]string{}}
		for k, v := range m {
			var err error
			switch k {
			case "Sid":
				s.Sid, _ = v.(string)
			case "Effect":
				s.Effect, _ = v.(string)
			case "Action":
				s.Actions, err = strs(v)
			case "NotAction":
				s.NotActions, err = strs(v)
			case "Resource":
				s.Resources, err = strs(v)
			case "NotResource":
				s.NotResources, err = strs(v)
			case "Condition":
				cm, ok := v.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("statement %d: Condition is %T", i, v)
				}
				for op, kv := range cm {
					kvm, ok := kv.(map[string]any)
					if !ok {
						return nil, fmt.Errorf("statement %d: Condition %s is %T", i, op, kv)
					}
					s.Conditions[op] = map[string][]string{}
					for key, vals := range kvm {
						if s.Conditions[op][key], err = strs(vals); err != nil {
							return nil, fmt.Errorf("statement %d: Condition %s %s: %w", i, op, key, err)
						}
					}
				}
			default:
				// Principal and anything else have no place in an identity policy.
				return nil, fmt.Errorf("statement %d: unexpected element %s in an identity policy", i, k)
			}
			if err != nil {
				return nil, fmt.Errorf("statement %d: %s: %w", i, k, err)
			}
		}
		if s.Effect != "Allow" && s.Effect != "Deny" {
			return nil, fmt.Errorf("statement %d: Effect %q", i, s.Effect)
		}
		if (len(s.Actions) == 0) == (len(s.NotActions) == 0) || (len(s.Resources) == 0) == (len(s.NotResources) == 0) {
			return nil, fmt.Errorf("statement %d: needs exactly one of Action/NotAction and of Resource/NotResource", i)
		}
		out = append(out, s)
	}
	return out, nil
}

func strs(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		return []string{x}, nil
	case []any:
		out := make([]string, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("element %d is %T (unresolved intrinsic?)", i, e)
			}
			out[i] = s
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%T is not a string or list (unresolved intrinsic?)", v)
	}
}

// Evaluate decides req against stmts.
func Evaluate(stmts []Statement, req Request) Decision {
	var allow *Statement
	for i := range stmts {
		s := &stmts[i]
		if !s.matchesAction(req.Action) || !s.matchesResource(req.Resource) {
			continue
		}
		cond := s.conditions(req.Context)
		switch s.Effect {
		case "Deny":
			if cond != condFalse { // true or unknown: a Deny applies
				return Decision{Explicit: true, Sid: s.Sid}
			}
		case "Allow":
			if cond == condTrue && allow == nil { // unknown: an Allow does not
				allow = s
			}
		}
	}
	if allow != nil {
		return Decision{Allowed: true, Sid: allow.Sid}
	}
	return Decision{}
}

func (s *Statement) matchesAction(action string) bool {
	if len(s.Actions) > 0 {
		return anyGlob(s.Actions, action, true)
	}
	return !anyGlob(s.NotActions, action, true)
}

func (s *Statement) matchesResource(resource string) bool {
	if len(s.Resources) > 0 {
		return anyGlob(s.Resources, resource, false)
	}
	return !anyGlob(s.NotResources, resource, false)
}

func anyGlob(patterns []string, s string, fold bool) bool {
	for _, p := range patterns {
		if fold {
			if glob(strings.ToLower(p), strings.ToLower(s)) {
				return true
			}
		} else if glob(p, s) {
			return true
		}
	}
	return false
}

// glob matches s against p, where '*' matches any run of characters
// (including '/' and ':', as in IAM) and '?' exactly one.
func glob(p, s string) bool {
	if p == "" {
		return s == ""
	}
	switch p[0] {
	case '*':
		for i := 0; i <= len(s); i++ {
			if glob(p[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return s != "" && glob(p[1:], s[1:])
	default:
		return s != "" && p[0] == s[0] && glob(p[1:], s[1:])
	}
}

type tri int

const (
	condTrue tri = iota
	condFalse
	condUnknown
)

// conditions is the AND of every condition block: false if any is false,
// else unknown if any is unknown, else true.
func (s *Statement) conditions(ctx map[string][]string) tri {
	lower := map[string][]string{}
	for k, v := range ctx {
		lower[strings.ToLower(k)] = v
	}
	result := condTrue
	for op, kv := range s.Conditions {
		for key, want := range kv {
			got, present := lower[strings.ToLower(key)]
			switch r := evalCondition(op, want, got, present); r {
			case condFalse:
				return condFalse
			case condUnknown:
				result = condUnknown
			}
		}
	}
	return result
}

func evalCondition(op string, want, got []string, present bool) tri {
	for _, w := range want {
		if strings.Contains(w, "${") {
			return condUnknown // policy variables are not modelled
		}
	}
	if set, op, ok := strings.Cut(op, ":"); ok {
		base, negated, known := stringOperator(op)
		if !known || (set != "ForAllValues" && set != "ForAnyValue") {
			return condUnknown
		}
		// Each request value on its own, as the single-valued operator
		// would test it: a negated operator holds for a value that matches
		// none of the condition's values.
		holds := func(g string) bool { return matchAny(base, want, g) != negated }
		if set == "ForAllValues" {
			for _, g := range got { // absent or empty: vacuously true
				if !holds(g) {
					return condFalse
				}
			}
			return condTrue
		}
		for _, g := range got { // ForAnyValue: absent or empty is false
			if holds(g) {
				return condTrue
			}
		}
		return condFalse
	}
	if op == "Bool" {
		return evalBool(want, got, present)
	}
	base, negated, known := stringOperator(op)
	if !known {
		return condUnknown // includes …IfExists and every other operator
	}
	if !present || len(got) == 0 {
		if negated {
			return condTrue
		}
		return condFalse
	}
	if len(got) > 1 {
		return condUnknown // a multi-valued key needs a set operator
	}
	m := matchAny(base, want, got[0])
	if m != negated {
		return condTrue
	}
	return condFalse
}

// evalBool is the Bool operator: the single request value equals one of
// the condition's boolean values (case-insensitive); an absent key is no
// match. A condition value other than true or false is not modelled.
func evalBool(want, got []string, present bool) tri {
	for _, w := range want {
		if !strings.EqualFold(w, "true") && !strings.EqualFold(w, "false") {
			return condUnknown
		}
	}
	if !present || len(got) == 0 {
		return condFalse
	}
	if len(got) > 1 {
		return condUnknown
	}
	for _, w := range want {
		if strings.EqualFold(w, got[0]) {
			return condTrue
		}
	}
	return condFalse
}

// stringOperator splits a string condition operator into its positive
// form and whether it is negated; known is false for any other operator.
func stringOperator(op string) (base string, negated, known bool) {
	switch op {
	case "StringEquals", "StringLike":
		return op, false, true
	case "StringNotEquals":
		return "StringEquals", true, true
	case "StringNotLike":
		return "StringLike", true, true
	}
	return "", false, false
}

func matchAny(base string, want []string, got string) bool {
	for _, w := range want {
		if base == "StringEquals" && w == got || base == "StringLike" && glob(w, got) {
			return true
		}
	}
	return false
}
