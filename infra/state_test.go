package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/state"
)

// stateStacks are the stacks every state-table test looks at.
func stateStacks(t *testing.T) map[string]*synthesized {
	t.Helper()
	return map[string]*synthesized{"default": defaultStack(t), "policy+slack": slackStack(t), "group+slack": groupStack(t)}
}

// stateTable returns the logical id and resource of the stack's one
// DynamoDB table.
func stateTable(t *testing.T, s *synthesized) (string, map[string]any) {
	t.Helper()
	tables := s.resources("AWS::DynamoDB::Table")
	if len(tables) != 1 {
		t.Fatalf("%d DynamoDB tables, want 1 (the state table)", len(tables))
	}
	for id, r := range tables {
		return id, r
	}
	return "", nil
}

// stateKeyID is the logical id of the KMS key that encrypts the table.
func stateKeyID(t *testing.T, s *synthesized) string {
	t.Helper()
	_, table := stateTable(t, s)
	sse, _ := table["Properties"].(map[string]any)["SSESpecification"].(map[string]any)
	ga, ok := sse["KMSMasterKeyId"].(map[string]any)["Fn::GetAtt"].([]any)
	if !ok || len(ga) != 2 || ga[1] != "Arn" {
		t.Fatalf("state table SSESpecification %v: want KMSMasterKeyId = the ARN of a key of the stack", sse)
	}
	return ga[0].(string)
}

// TestStateTableIsTheSchema: the synthesized table is the one pkg/state
// creates (state.Schema, state.TTLAttribute), on-demand, with point-in-time
// recovery, deletion protection, retained on stack deletion, encrypted with
// a customer-managed key of its own that rotates and is retained too, and
// named by CloudFormation.
func TestStateTableIsTheSchema(t *testing.T) {
	hashRange := func(pk, sk string) []any {
		return []any{
			map[string]any{"AttributeName": pk, "KeyType": "HASH"},
			map[string]any{"AttributeName": sk, "KeyType": "RANGE"},
		}
	}
	attrs := map[string]bool{state.Schema.PartitionKey: true, state.Schema.SortKey: true}
	wantGSIs := map[string]any{}
	for _, ix := range state.Schema.Indexes {
		attrs[ix.PartitionKey], attrs[ix.SortKey] = true, true
		wantGSIs[ix.Name] = map[string]any{
			"IndexName":  ix.Name,
			"KeySchema":  hashRange(ix.PartitionKey, ix.SortKey),
			"Projection": map[string]any{"ProjectionType": "ALL"},
		}
	}
	var wantAttrs []string
	for a := range attrs {
		wantAttrs = append(wantAttrs, a)
	}
	sort.Strings(wantAttrs)

	for name, s := range stateStacks(t) {
		id, table := stateTable(t, s)
		p := table["Properties"].(map[string]any)
		if table["DeletionPolicy"] != "Retain" || table["UpdateReplacePolicy"] != "Retain" {
			t.Errorf("%s: table DeletionPolicy %v UpdateReplacePolicy %v, want Retain", name, table["DeletionPolicy"], table["UpdateReplacePolicy"])
		}
		if n, ok := p["TableName"]; ok {
			t.Errorf("%s: table name %v: CloudFormation must name it (a redeploy would collide with the retained table)", name, n)
		}
		if p["BillingMode"] != "PAY_PER_REQUEST" {
			t.Errorf("%s: billing mode %v", name, p["BillingMode"])
		}
		if !reflect.DeepEqual(p["KeySchema"], hashRange(state.Schema.PartitionKey, state.Schema.SortKey)) {
			t.Errorf("%s: key schema %s", name, mustJSON(p["KeySchema"]))
		}
		var gotAttrs []string
		for _, a := range p["AttributeDefinitions"].([]any) {
			m := a.(map[string]any)
			if m["AttributeType"] != "S" {
				t.Errorf("%s: attribute %v of type %v, want S", name, m["AttributeName"], m["AttributeType"])
			}
			gotAttrs = append(gotAttrs, m["AttributeName"].(string))
		}
		sort.Strings(gotAttrs)
		if !reflect.DeepEqual(gotAttrs, wantAttrs) {
			t.Errorf("%s: attribute definitions %v, want %v", name, gotAttrs, wantAttrs)
		}
		gotGSIs := map[string]any{}
		for _, g := range p["GlobalSecondaryIndexes"].([]any) {
			m := g.(map[string]any)
			gotGSIs[m["IndexName"].(string)] = m
		}
		if !reflect.DeepEqual(gotGSIs, wantGSIs) {
			t.Errorf("%s: global secondary indexes\n got %s\nwant %s", name, mustJSON(gotGSIs), mustJSON(wantGSIs))
		}
		if _, ok := p["LocalSecondaryIndexes"]; ok {
			t.Errorf("%s: local secondary indexes %v", name, p["LocalSecondaryIndexes"])
		}
		if want := map[string]any{"AttributeName": state.TTLAttribute, "Enabled": true}; !reflect.DeepEqual(p["TimeToLiveSpecification"], want) {
			t.Errorf("%s: TTL %v, want %v", name, p["TimeToLiveSpecification"], want)
		}
		if pitr, _ := p["PointInTimeRecoverySpecification"].(map[string]any); pitr["PointInTimeRecoveryEnabled"] != true {
			t.Errorf("%s: point-in-time recovery %v", name, p["PointInTimeRecoverySpecification"])
		}
		if p["DeletionProtectionEnabled"] != true {
			t.Errorf("%s: deletion protection %v", name, p["DeletionProtectionEnabled"])
		}
		keyID := stateKeyID(t, s)
		if want := map[string]any{"SSEEnabled": true, "SSEType": "KMS", "KMSMasterKeyId": map[string]any{"Fn::GetAtt": []any{keyID, "Arn"}}}; !reflect.DeepEqual(p["SSESpecification"], want) {
			t.Errorf("%s: SSE %s, want %s", name, mustJSON(p["SSESpecification"]), mustJSON(want))
		}
		if keyID == s.id(s.K.Stack.Node().FindChild(strPtr("SecretsKey"))) {
			t.Errorf("%s: the table shares the secrets key", name)
		}
		key := s.JSON["Resources"].(map[string]any)[keyID].(map[string]any)
		if key["Type"] != "AWS::KMS::Key" || key["DeletionPolicy"] != "Retain" || key["UpdateReplacePolicy"] != "Retain" ||
			key["Properties"].(map[string]any)["EnableKeyRotation"] != true {
			t.Errorf("%s: state key %s: want a rotating KMS key, retained", name, mustJSON(key))
		}

		outputs := s.JSON["Outputs"].(map[string]any)
		if got := mustJSON(outputs["StateTableName"].(map[string]any)["Value"]); got != mustJSON(map[string]any{"Ref": id}) {
			t.Errorf("%s: StateTableName output %s", name, got)
		}
		if got := mustJSON(outputs["StateKeyArn"].(map[string]any)["Value"]); got != mustJSON(map[string]any{"Fn::GetAtt": []any{keyID, "Arn"}}) {
			t.Errorf("%s: StateKeyArn output %s", name, got)
		}
	}
}

// wantStateFunctions are the functions that read and write the state table.
var wantStateFunctions = map[string]bool{FnAPI: true, FnReaper: true, FnRotate: true, FnWorker: true}

// TestStateTableReachesTheFunctions: KEYVEND_TABLE names the state table in
// the environment of exactly the functions that use it, in each grant
// mode; the Slack function, which only prechecks and queues, has none.
func TestStateTableReachesTheFunctions(t *testing.T) {
	for name, s := range stateStacks(t) {
		id, _ := stateTable(t, s)
		for _, fn := range mustConfig(t, s).DeployedFunctions() {
			env := s.props(s.id(s.K.Functions[fn]))["Environment"].(map[string]any)["Variables"].(map[string]any)
			got, ok := env["KEYVEND_TABLE"]
			switch {
			case wantStateFunctions[fn] && !reflect.DeepEqual(got, map[string]any{"Ref": id}):
				t.Errorf("%s: %s KEYVEND_TABLE = %v, want the state table (Ref %s)", name, fn, got, id)
			case !wantStateFunctions[fn] && ok:
				t.Errorf("%s: %s has KEYVEND_TABLE %v; it does not use the state table", name, fn, got)
			}
		}
	}
}

// TestStateKeyPolicy: the state key's policy is the pattern of the
// AWS-managed aws/dynamodb key. The account (IAM) administers the key, and
// any principal of the account may use it, but only through DynamoDB in
// this region (kms:ViaService) and only as a caller of this account
// (kms:CallerAccount): Encrypt, Decrypt, ReEncrypt*, GenerateDataKey*,
// DescribeKey, and CreateGrant only for an AWS resource; that is what the
// principal that creates or restores a table with a customer-managed key
// needs (AWS KMS developer guide, "How Amazon DynamoDB uses AWS KMS").
// IAM decides who reaches the table, and so the key: no role is named.
// DynamoDB may describe the key. Nobody else is in the key policy.
func TestStateKeyPolicy(t *testing.T) {
	for name, s := range stateStacks(t) {
		policies := keyPolicyOf(t, s, stateKeyID(t, s))
		root := "AWS:arn:aws:iam::" + testAccount + ":root"
		dynamodb := "Service:dynamodb.amazonaws.com"

		want := map[string]bool{root: true, dynamodb: true}
		for p := range policies {
			if !want[p] {
				t.Errorf("%s: state key policy names %s", name, p)
			}
		}
		for p := range want {
			if policies[p] == nil {
				t.Errorf("%s: state key policy does not name %s", name, p)
			}
		}

		ctx := func(caller, service string) map[string][]string {
			c := map[string][]string{}
			if caller != "" {
				c["kms:CallerAccount"] = []string{caller}
			}
			if service != "" {
				c["kms:ViaService"] = []string{service + "." + testRegion + ".amazonaws.com"}
			}
			return c
		}
		viaDynamoDB := ctx(testAccount, "dynamodb")
		forResource := func(c map[string][]string, v string) map[string][]string {
			out := map[string][]string{"kms:GrantIsForAWSResource": {v}}
			for k, x := range c {
				out[k] = x
			}
			return out
		}
		type row struct {
			principal, action string
			ctx               map[string][]string
			allowed           bool
		}
		var rows []row
		for _, a := range []string{"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext",
			"kms:ReEncryptFrom", "kms:ReEncryptTo"} {
			rows = append(rows,
				row{root, a, viaDynamoDB, true},
				row{root, a, nil, false},
				row{root, a, ctx(testAccount, ""), false},
				row{root, a, ctx(testAccount, "secretsmanager"), false},
				row{root, a, ctx("444455556666", "dynamodb"), false},
				row{root, a, ctx("", "dynamodb"), false},
				row{dynamodb, a, nil, false})
		}
		for _, a := range []string{"kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:EnableKeyRotation", "kms:ScheduleKeyDeletion", "kms:ListGrants", "kms:RevokeGrant"} {
			rows = append(rows, row{root, a, nil, true})
		}
		rows = append(rows,
			row{root, "kms:DescribeKey", viaDynamoDB, true},
			row{root, "kms:CreateGrant", forResource(viaDynamoDB, "true"), true},
			row{root, "kms:CreateGrant", forResource(viaDynamoDB, "false"), false},
			row{root, "kms:CreateGrant", viaDynamoDB, false},
			row{root, "kms:CreateGrant", forResource(ctx(testAccount, "secretsmanager"), "true"), false},
			row{root, "kms:CreateGrant", forResource(ctx("444455556666", "dynamodb"), "true"), false},
			row{root, "kms:CreateGrant", forResource(ctx("", "dynamodb"), "true"), false},
			row{root, "kms:CreateGrant", forResource(ctx(testAccount, ""), "true"), false},
			row{root, "kms:Sign", viaDynamoDB, false},
			row{dynamodb, "kms:DescribeKey", nil, true},
			row{dynamodb, "kms:CreateGrant", forResource(viaDynamoDB, "true"), false},
		)
		keyARN := "arn:aws:kms:" + testRegion + ":" + testAccount + ":key/x"
		var table strings.Builder
		for _, r := range rows {
			d := Evaluate(policies[r.principal], Request{Action: r.action, Resource: keyARN, Context: r.ctx})
			mark := ""
			if d.Allowed != r.allowed {
				mark = " <-- WRONG"
				t.Errorf("%s: state key policy: %s %s %v: got %s, want allowed=%v", name, r.principal, r.action, r.ctx, d, r.allowed)
			}
			fmt.Fprintf(&table, "%-40s %-36s %-110s %s%s\n", r.principal, r.action, ctxString(r.ctx), d, mark)
		}
		t.Logf("%s: state key policy:\n%s", name, table.String())
	}
}

// TestStateTableThrottleAlarm: one alarm on the state table's throttled
// requests, summed over every operation pkg/state calls (read from its
// source), notifying the alarm topic. DynamoDB publishes
// ThrottledRequests only when a request is throttled: each series is
// FILLed with 0 and missing data does not breach, so a quiet table is OK,
// not INSUFFICIENT_DATA.
func TestStateTableThrottleAlarm(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "pkg", "state", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`\bs\.db\.([A-Z]\w+)\(`).FindAllStringSubmatch(string(b), -1) {
			calls[m[1]] = true
		}
	}
	if len(calls) == 0 {
		t.Fatal("found no s.db.<Operation>( calls in pkg/state")
	}

	for name, s := range stateStacks(t) {
		tableID, _ := stateTable(t, s)
		var topicID string
		for id := range s.resources("AWS::SNS::Topic") {
			topicID = id
		}
		found := 0
		for _, a := range s.resources("AWS::CloudWatch::Alarm") {
			p := a["Properties"].(map[string]any)
			if !strings.Contains(mustJSON(p), "ThrottledRequests") {
				continue
			}
			found++
			if p["Threshold"] != float64(1) || p["ComparisonOperator"] != "GreaterThanOrEqualToThreshold" ||
				p["EvaluationPeriods"] != float64(1) || p["TreatMissingData"] != "notBreaching" {
				t.Errorf("%s: throttle alarm %s", name, mustJSON(p))
			}
			if !reflect.DeepEqual(p["AlarmActions"], []any{map[string]any{"Ref": topicID}}) {
				t.Errorf("%s: throttle alarm actions %v, want the alarm topic", name, p["AlarmActions"])
			}
			ops := map[string]bool{}
			var expression string
			for _, raw := range p["Metrics"].([]any) {
				m := raw.(map[string]any)
				if e, ok := m["Expression"].(string); ok {
					expression = e
					if m["ReturnData"] == false {
						t.Errorf("%s: the expression does not return data", name)
					}
					continue
				}
				if m["ReturnData"] != false {
					t.Errorf("%s: metric %v returns data; only the sum should", name, m["Id"])
				}
				stat := m["MetricStat"].(map[string]any)
				metric := stat["Metric"].(map[string]any)
				if metric["Namespace"] != "AWS/DynamoDB" || metric["MetricName"] != "ThrottledRequests" || stat["Stat"] != "Sum" || stat["Period"] != float64(300) {
					t.Errorf("%s: throttle alarm metric %s", name, mustJSON(m))
				}
				dims := map[string]any{}
				for _, d := range metric["Dimensions"].([]any) {
					dims[d.(map[string]any)["Name"].(string)] = d.(map[string]any)["Value"]
				}
				if !reflect.DeepEqual(dims["TableName"], map[string]any{"Ref": tableID}) || len(dims) != 2 {
					t.Errorf("%s: throttle alarm metric dimensions %v, want the state table and an operation", name, dims)
				}
				op, _ := dims["Operation"].(string)
				ops[op] = true
				if !strings.Contains(mustJSON(p["Metrics"]), `FILL(`+m["Id"].(string)+`,0)`) {
					t.Errorf("%s: metric %v is not FILLed with 0 in the expression", name, m["Id"])
				}
			}
			if !reflect.DeepEqual(ops, calls) {
				t.Errorf("%s: throttle alarm operations %v, want the operations pkg/state calls %v", name, ops, calls)
			}
			if "math "+expression != stateThrottlesSignature {
				t.Errorf("%s: throttle alarm expression %q", name, expression)
			}
		}
		if found != 1 {
			t.Errorf("%s: %d alarms on the state table's throttled requests, want 1", name, found)
		}
	}
}
