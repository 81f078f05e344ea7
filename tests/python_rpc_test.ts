/**
 * The managers protocol's messages (lib/wire/python/rpc.ts): requests and
 * replies in and out, strict request checking, and argument binding with the
 * errors Python itself would raise.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  bindArgs,
  encodeReply,
  encodeRequest,
  errorReply,
  exceptionText,
  parseReply,
  parseRequest,
} from "../lib/python/wire/rpc.ts";
import { unpickle } from "../lib/python/wire/pickle_reader.ts";
import { PyDict, PyObject, PyTuple, queueEmpty } from "../lib/python/wire/values.ts";
import { PickleError, PythonCallError } from "../lib/python/errors.ts";

Deno.test("a request goes out and comes back as (ident, method, args, kwargs)", () => {
  const request = parseRequest(unpickle(encodeRequest("q", "get", [], { timeout: 1 })));
  assert.equal(request.ident, "q");
  assert.equal(request.method, "get");
  assert.deepEqual(request.args, []);
  assert.equal(request.kwargs.get("timeout"), 1);
  assert.equal(parseRequest(unpickle(encodeRequest(null, "dummy"))).ident, null);
});

Deno.test("anything but a well-formed request tuple is refused", () => {
  for (
    const bad of [
      42,
      new PyTuple([null, "dummy", new PyTuple([])]),
      new PyTuple([1, "dummy", new PyTuple([]), new PyDict()]),
      new PyTuple([null, 7, new PyTuple([]), new PyDict()]),
      new PyTuple([null, "dummy", "args", new PyDict()]),
      new PyTuple([null, "dummy", new PyTuple([]), new PyDict([[1, 2]])]),
    ]
  ) {
    assert.throws(() => parseRequest(bad), PickleError);
  }
});

Deno.test("replies: #RETURN values and #ERROR exceptions", () => {
  assert.deepEqual(parseReply(unpickle(encodeReply("#RETURN", 5))), { kind: "#RETURN", value: 5 });
  const empty = parseReply(unpickle(errorReply(new PythonCallError("_queue.Empty", ""))));
  assert.equal(empty.kind, "#ERROR");
  assert.ok(empty.value instanceof PyObject);
  assert.equal(empty.value.cls.qualifiedName, "_queue.Empty");
  assert.deepEqual(empty.value.args, []);
  const typed = parseReply(unpickle(errorReply(new PythonCallError("builtins.TypeError", "no"))));
  assert.equal(exceptionText(typed.value), "builtins.TypeError: no");
  assert.equal(exceptionText(queueEmpty()), "_queue.Empty");
  assert.throws(() => parseReply(new PyTuple(["#NOPE", null])), PickleError);
});

Deno.test("arguments bind as Python binds them, with Python's errors", () => {
  const params = [["item"], ["block", true], ["timeout", null]] as const;
  const bound = bindArgs("put", params, [1], new PyDict([["timeout", 2]]));
  assert.deepEqual([...bound], [["item", 1], ["timeout", 2], ["block", true]]);
  const cases: [unknown[], PyDict, RegExp][] = [
    [[1, 2, 3, 4], new PyDict(), /put\(\) takes 4 positional arguments but 5 were given/],
    [[], new PyDict(), /put\(\) missing 1 required positional argument: 'item'/],
    [[1], new PyDict([["x", 1]]), /put\(\) got an unexpected keyword argument 'x'/],
    [[1, true], new PyDict([["block", false]]), /got multiple values for argument 'block'/],
  ];
  for (const [args, kwargs, pattern] of cases) {
    assert.throws(
      () => bindArgs("put", params, args as never, kwargs),
      (error: unknown) =>
        error instanceof PythonCallError && error.exceptionType === "builtins.TypeError" &&
        pattern.test(error.message),
    );
  }
});
