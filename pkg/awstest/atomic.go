package awstest

import (
	"context"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// dynamoDBWrites is held around every DynamoDB write a test client makes.
var dynamoDBWrites sync.Mutex

// SerializeDynamoDBWrites makes cfg's DynamoDB writes (PutItem,
// UpdateItem, DeleteItem, TransactWriteItems, BatchWriteItem) one at a
// time across the test process, waiting for each answer.
//
// moto is not faithful here: its server runs requests on threads with no
// lock around a conditional write's check and its write, so two
// concurrent conditional writes to one item can both succeed (two takers
// of one stale lease — seen in the idempotency tests), and a transaction
// that snapshots the table while another write changes it fails with a
// 500 ("dictionary changed size during iteration"). DynamoDB applies each
// write to an item atomically. Serializing the writes models that (more
// strictly: DynamoDB only orders writes to the same item); reads are not
// held. Config applies it to every test client; the embedded moto of
// `make run` does not have it.
func SerializeDynamoDBWrites(cfg *aws.Config) {
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("awstest.SerializeDynamoDBWrites",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if awsmiddleware.GetServiceID(ctx) == "DynamoDB" && dynamoDBWrite(awsmiddleware.GetOperationName(ctx)) {
					dynamoDBWrites.Lock()
					defer dynamoDBWrites.Unlock()
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}

func dynamoDBWrite(op string) bool {
	for _, p := range []string{"Put", "Update", "Delete", "TransactWrite", "BatchWrite"} {
		if strings.HasPrefix(op, p) {
			return op != "UpdateTimeToLive" && op != "UpdateTable" && op != "DeleteTable"
		}
	}
	return false
}
