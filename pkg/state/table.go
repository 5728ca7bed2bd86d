package state

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// TableAdmin is what CreateTable calls.
type TableAdmin interface {
	CreateTable(context.Context, *dynamodb.CreateTableInput, ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	UpdateTimeToLive(context.Context, *dynamodb.UpdateTimeToLiveInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
}

// Schema is the table's key schema and indexes, as CreateTable makes them
// and as the CDK stack declares them (infra reads these names).
var Schema = struct {
	PartitionKey, SortKey string
	Indexes               []IndexSchema
}{
	PartitionKey: "pk", SortKey: "sk",
	Indexes: []IndexSchema{
		{Name: IndexByName, PartitionKey: "name_pk", SortKey: "name_sk"},
		{Name: IndexByRequester, PartitionKey: "req_pk", SortKey: "name_sk"},
		{Name: IndexByExpiry, PartitionKey: "exp_pk", SortKey: "exp_sk"},
	},
}

// IndexSchema is one global secondary index (projection: all attributes).
type IndexSchema struct{ Name, PartitionKey, SortKey string }

// CreateTable creates the state table as the CDK stack does (on-demand,
// the indexes, TTL on TTLAttribute), for the embedded local environment
// and tests. A table that exists already is left as it is.
func CreateTable(ctx context.Context, db TableAdmin, name string) error {
	attrs := map[string]bool{Schema.PartitionKey: true, Schema.SortKey: true}
	var gsis []types.GlobalSecondaryIndex
	for _, ix := range Schema.Indexes {
		attrs[ix.PartitionKey], attrs[ix.SortKey] = true, true
		gsis = append(gsis, types.GlobalSecondaryIndex{
			IndexName: aws.String(ix.Name),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(ix.PartitionKey), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(ix.SortKey), KeyType: types.KeyTypeRange},
			},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		})
	}
	var defs []types.AttributeDefinition
	for a := range attrs {
		defs = append(defs, types.AttributeDefinition{AttributeName: aws.String(a), AttributeType: types.ScalarAttributeTypeS})
	}
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: defs,
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(Schema.PartitionKey), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(Schema.SortKey), KeyType: types.KeyTypeRange},
		},
		GlobalSecondaryIndexes: gsis,
	})
	var inUse *types.ResourceInUseException
	switch {
	case errors.As(err, &inUse):
		return nil
	case err != nil:
		return fmt.Errorf("create table %s: %w", name, err)
	}
	_, err = db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(name),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(TTLAttribute), Enabled: aws.Bool(true)},
	})
	if err != nil {
		return fmt.Errorf("enable TTL on table %s: %w", name, err)
	}
	return nil
}
