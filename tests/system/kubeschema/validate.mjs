// validate.mjs: schema validation of Kubernetes objects for test_deploy.py.
// Reads a JSON array of objects on standard input and prints a JSON array
// of {kind, name, ok, error}: each object checked by the validator that
// kubernetes-models compiled from the Kubernetes API's OpenAPI schema (or
// from the Prometheus Operator's CRD) for its apiVersion and kind.  An
// apiVersion and kind with no model is an error, not a pass.
import { readFileSync } from "node:fs";

const OPERATOR = "monitoring.coreos.com";

function modulePath(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/")
    ? apiVersion.split("/")
    : [null, apiVersion];
  if (group === OPERATOR)
    return `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`;
  return group
    ? `kubernetes-models/${group}/${version}/${kind}`
    : `kubernetes-models/${version}/${kind}`;
}

const objects = JSON.parse(readFileSync(0, "utf8"));
const out = [];
for (const obj of objects) {
  const r = { kind: obj.kind, name: obj.metadata && obj.metadata.name };
  try {
    const mod = await import(modulePath(obj.apiVersion, obj.kind));
    const Model = mod[obj.kind];
    if (typeof Model !== "function")
      throw new Error(`no model for ${obj.apiVersion} ${obj.kind}`);
    new Model(obj).validate();
    r.ok = true;
  } catch (e) {
    r.ok = false;
    r.error = String(e && e.message ? e.message : e).slice(0, 2000);
  }
  out.push(r);
}
process.stdout.write(JSON.stringify(out) + "\n");
