// make openapi-check type-checks this file (tsc --strict) against the types
// openapi-typescript generates from pkg/httpapi/openapi.json with its
// DEFAULT options (gen/keyvend.d.ts): what a portal team gets. The README's
// own request bodies are checked the same way in gen/readme.ts (readme.mjs
// writes it). Every @ts-expect-error is an assertion: if the generated
// types stop refusing that body, tsc fails ("Unused '@ts-expect-error'").
import createClient from "openapi-fetch";
import type { components, paths } from "./gen/keyvend";

type CreateRequest = components["schemas"]["CreateRequest"];
type RotateRequest = components["schemas"]["RotateRequest"];
type UpdateGrantsRequest = components["schemas"]["UpdateGrantsRequest"];

const client = createClient<paths>({ baseUrl: "http://127.0.0.1:8080" });

// Optional fields are optional: no prefix, no wait, no expiry.
export const minimal: CreateRequest = {
  user: "site-deployer",
  grants: [{ bucket: "site.example.com", access: "read-write" }],
  reason: "blog deploys",
};
export const rotateNoWait: RotateRequest = {};
export const grantsOnly: UpdateGrantsRequest = { grants: [{ bucket: "assets.example.com", access: "write-only" }] };

// Required fields are required.
// @ts-expect-error reason is required
export const noReason: CreateRequest = { user: "u", grants: [{ bucket: "b.example.com", access: "read-only" }] };
// @ts-expect-error access is one of four levels
export const badAccess: CreateRequest = { user: "u", grants: [{ bucket: "b.example.com", access: "admin" }], reason: "r" };
// @ts-expect-error unknown fields are refused
export const unknownField: RotateRequest = { wait: true, force: true };

// Through openapi-fetch: paths, path parameters and bodies are typed. A
// create that waits for approval is a 202 with the pending request: the
// answer is a user or a request, told apart by the status.
export async function vend(): Promise<string | undefined> {
  const { data, error, response } = await client.POST("/v1/users", { body: minimal });
  if (error) {
    return error.request_id;
  }
  if (response.status === 202 && "id" in data) {
    return data.id; // GET /v1/requests/{id}
  }
  return "access_key_id" in data ? data.access_key_id : undefined;
}

// Approvals: a decision's reason is typed, the request id is a path parameter.
export async function approve(id: string): Promise<string | undefined> {
  const { data } = await client.POST("/v1/requests/{id}/approve", { params: { path: { id } }, body: { reason: "ticket OPS-42" } });
  return data?.status;
}

export async function rotate(name: string): Promise<boolean | undefined> {
  const { data } = await client.POST("/v1/users/{name}/rotate", {
    params: { path: { name }, header: { "X-Request-Id": "portal-7f3c.0" } },
    body: {},
  });
  return data?.ready;
}
