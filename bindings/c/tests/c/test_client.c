/*
 * Tests of the C ABI against the real dockerd. Run by tests/c_programs.rs (natively and
 * under valgrind) as: test_client IMAGE PREFIX
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "libgo.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    checks++;                                                                  \
    if (!(cond)) {                                                             \
      failures++;                                                              \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                     \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, "\n");                                                   \
    }                                                                          \
  } while (0)

/* Checks that a call returning no data succeeded, and frees its error. */
static void ok(libgo_error *err, const char *what) {
  CHECK(err == NULL, "%s: %s", what, err ? err->message : "");
  libgo_error_free(err);
}

/* Parses a result's JSON (NULL after a failed check), and frees the result. */
static cJSON *ok_parse(libgo_result r, const char *what) {
  CHECK(r.error == NULL && r.json != NULL, "%s: %s", what,
        r.error ? r.error->message : "no JSON");
  cJSON *doc = r.json ? cJSON_Parse(r.json) : NULL;
  CHECK(r.json == NULL || doc != NULL, "%s: not JSON: %s", what, r.json);
  libgo_result_free(&r);
  return doc;
}

/* Whether the value at `path` (keys joined by '.', '*' for any element of an array) equals
 * the JSON `expected`, or exists when `expected` is NULL. */
static int matches(const cJSON *node, const char *path, const cJSON *expected) {
  if (node == NULL) return 0;
  if (*path == '\0') return expected == NULL || cJSON_Compare(node, expected, 1);
  const char *dot = strchr(path, '.');
  size_t len = dot ? (size_t)(dot - path) : strlen(path);
  const char *rest = dot ? dot + 1 : path + len;
  if (len == 1 && path[0] == '*') {
    const cJSON *item;
    cJSON_ArrayForEach(item, node) {
      if (matches(item, rest, expected)) return 1;
    }
    return 0;
  }
  char key[64];
  if (len >= sizeof key) return 0;
  memcpy(key, path, len);
  key[len] = '\0';
  return matches(cJSON_GetObjectItemCaseSensitive(node, key), rest, expected);
}

/* Checks one field of a parsed result. */
static void check_field(const cJSON *doc, const char *path, const char *expected,
                        const char *what) {
  if (doc == NULL) return; /* already reported */
  cJSON *want = expected ? cJSON_Parse(expected) : NULL;
  char *got = cJSON_PrintUnformatted(doc);
  CHECK(matches(doc, path, want), "%s: %s is not %s in %s", what, path,
        expected ? expected : "present", got ? got : "?");
  cJSON_free(got);
  cJSON_Delete(want);
}

/* Checks that a result holds JSON whose `path` is `expected` (present, for NULL), and
 * frees it. */
static void ok_field(libgo_result r, const char *path, const char *expected,
                     const char *what) {
  cJSON *doc = ok_parse(r, what);
  check_field(doc, path, expected, what);
  cJSON_Delete(doc);
}

/* Checks that a result failed with `code`, and frees it. */
static void fails_with(libgo_result r, libgo_code code, const char *what) {
  CHECK(r.json == NULL && r.error != NULL && r.error->code == code,
        "%s: expected code %d, got %s", what, (int)code,
        r.error ? r.error->message : r.json);
  libgo_result_free(&r);
}

struct worker {
  libgo_client *client;
  const char *name;
  int errors;
};

/* Reads a console into `buf` (kept NUL-terminated) until `until` shows up, or with `until`
 * NULL to the end of the console. Returns NULL, or the message of the read that failed. */
static const char *read_console(libgo_console *console, char *buf, size_t size, const char *until) {
  static char failed[256];
  size_t used = strlen(buf);
  /* A bound on reads, for a console that keeps printing without `until`. */
  for (int reads = 0; reads < 200 && (until == NULL || !strstr(buf, until)); reads++) {
    libgo_bytes_result chunk = libgo_console_read(console, 10000);
    if (chunk.error) {
      snprintf(failed, sizeof failed, "%s", chunk.error->message);
      libgo_error_free(chunk.error);
      return failed;
    }
    if (chunk.data == NULL) break;
    size_t n = chunk.len < size - 1 - used ? chunk.len : size - 1 - used;
    memcpy(buf + used, chunk.data, n);
    used += n;
    buf[used] = 0;
    libgo_bytes_free(chunk.data, chunk.len);
  }
  return NULL;
}

static void *concurrent_reads(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < 5; i++) {
    libgo_result r = libgo_instance_get(w->client, w->name);
    if (r.error) w->errors++;
    libgo_result_free(&r);
    r = libgo_instance_list(w->client, NULL, 1, 10);
    if (r.error) w->errors++;
    libgo_result_free(&r);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s IMAGE PREFIX\n", argv[0]);
    return 2;
  }
  const char *image = argv[1];
  const char *prefix = argv[2];
  char name[128], spec[1024], filter[256], buf[256], want[160];
  snprintf(name, sizeof name, "%s-c", prefix);

  /* A bad config is INVALID_INPUT, reported through the out-parameter. */
  libgo_error *err = NULL;
  libgo_client *bad = libgo_client_new("{\"docker\":\"sometimes\"}", &err);
  CHECK(bad == NULL && err && err->code == LIBGO_CODE_INVALID_INPUT, "bad config");
  libgo_error_free(err);
  err = NULL;

  libgo_client *client =
      libgo_client_new("{\"docker\":\"required\",\"kvm\":\"off\"}", &err);
  if (!client) {
    fprintf(stderr, "connect: %s\n", err ? err->message : "?");
    libgo_error_free(err);
    return 1;
  }
  ok_field(libgo_backends(client), "*", "\"docker\"", "backends");
  ok_field(libgo_health(client), "*.up", "true", "health");
  ok_field(libgo_capabilities(client, "docker"), "exec", "true", "capabilities");
  ok_field(libgo_image_inspect(client, NULL, image), "kind", "\"container\"", "image inspect");

  /* Errors carry their kind. */
  fails_with(libgo_instance_get(client, "libgo-c-no-such-instance"),
             LIBGO_CODE_NOT_FOUND, "get missing");
  fails_with(libgo_instance_create(client, "{\"name\":\"Bad Name!\",\"kind\":\"container\",\"image\":\"x\"}"),
             LIBGO_CODE_INVALID_INPUT, "invalid name");
  fails_with(libgo_instance_create(client, "not json"), LIBGO_CODE_INVALID_INPUT,
             "not json");
  fails_with(libgo_instance_get(client, NULL), LIBGO_CODE_INVALID_INPUT, "NULL id");

  /* Create; then watch its events while starting it. */
  snprintf(spec, sizeof spec,
           "{\"name\":\"%s\",\"kind\":\"container\",\"image\":\"%s\","
           "\"labels\":{\"test.libgo.test\":\"%s\"},"
           "\"command\":[\"sh\",\"-c\",\"trap 'exit 0' TERM; echo hello-from-c; "
           "while true; do sleep 1; done\"]}",
           name, image, prefix);
  ok_field(libgo_instance_create(client, spec), "state", "\"stopped\"", "create");
  fails_with(libgo_instance_create(client, spec), LIBGO_CODE_CONFLICT, "duplicate");

  snprintf(filter, sizeof filter, "{\"instance\":\"%s\",\"actions\":[\"started\"]}", name);
  libgo_stream_result events = libgo_events(client, filter);
  CHECK(events.error == NULL, "events: %s", events.error ? events.error->message : "");
  libgo_error_free(events.error);

  ok(libgo_instance_start(client, name), "start");
  if (events.stream) {
    libgo_result ev = libgo_stream_next(events.stream, 10000);
    ok_field(ev, "action", "\"started\"", "started event");
    libgo_stream_free(events.stream);
  }

  snprintf(filter, sizeof filter, "{\"labels\":{\"test.libgo.test\":\"%s\"}}", prefix);
  ok_field(libgo_instance_list(client, filter, 1, 10), "count", "1", "list by label");
  ok_field(libgo_instance_list_all(client, filter), "*.state", "\"running\"", "list all by label");
  ok_field(libgo_instance_get(client, name), "state", "\"running\"", "get running");
  ok_field(libgo_instance_stats(client, name), "memoryBytes", NULL, "stats");
  cJSON *ran = ok_parse(libgo_instance_exec(client, name, "{\"command\":[\"echo\",\"exec-ok\"]}"), "exec");
  check_field(ran, "exitCode", "0", "exec");
  check_field(ran, "stdout", "\"exec-ok\\n\"", "exec");
  cJSON_Delete(ran);

  /* Follow the logs until the marker shows up. */
  libgo_stream_result logs = libgo_instance_logs(client, name, "{\"follow\":true}");
  CHECK(logs.error == NULL, "logs: %s", logs.error ? logs.error->message : "");
  libgo_error_free(logs.error);
  int seen = 0;
  for (int i = 0; logs.stream && i < 20 && !seen; i++) {
    libgo_result line = libgo_stream_next(logs.stream, 10000);
    cJSON *entry = line.json ? cJSON_Parse(line.json) : NULL;
    cJSON *message = cJSON_GetObjectItemCaseSensitive(entry, "message");
    if (cJSON_IsString(message) && strncmp(message->valuestring, "hello-from-c", 12) == 0) seen = 1;
    cJSON_Delete(entry);
    int end = line.json == NULL;
    libgo_result_free(&line);
    if (end) break;
  }
  CHECK(seen, "the followed log shows the marker");
  libgo_stream_free(logs.stream);

  /* The client is shared by several threads at once. */
  pthread_t threads[4];
  struct worker workers[4];
  for (int i = 0; i < 4; i++) {
    workers[i] = (struct worker){client, name, 0};
    pthread_create(&threads[i], NULL, concurrent_reads, &workers[i]);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(threads[i], NULL);
    CHECK(workers[i].errors == 0, "thread %d had %d errors", i, workers[i].errors);
  }

  /* An interactive shell: type a command, read until its answer, end it. */
  libgo_console_result con = libgo_instance_console(client, name);
  CHECK(con.error == NULL, "console: %s", con.error ? con.error->message : "");
  libgo_error_free(con.error);
  if (con.console) {
    libgo_bytes_result quiet = libgo_console_read(con.console, 300);
    while (quiet.error == NULL && quiet.data != NULL) { /* a prompt, maybe */
      libgo_bytes_free(quiet.data, quiet.len);
      quiet = libgo_console_read(con.console, 300);
    }
    CHECK(quiet.error && quiet.error->code == LIBGO_CODE_TIMEOUT, "console read times out");
    libgo_error_free(quiet.error);
    const char *typed = "echo console-$((6*7))\n";
    ok(libgo_console_write(con.console, (const uint8_t *)typed, strlen(typed)), "console write");
    char answer[4096] = {0};
    const char *failed = read_console(con.console, answer, sizeof answer, "console-42");
    CHECK(failed == NULL, "console read: %s", failed ? failed : "");
    CHECK(strstr(answer, "console-42") != NULL, "console answers: %s", answer);
    libgo_error *no_size = libgo_console_resize(con.console, 10, 10);
    CHECK(no_size && no_size->code == LIBGO_CODE_UNSUPPORTED, "an instance's console has no size");
    libgo_error_free(no_size);
    ok(libgo_console_write(con.console, (const uint8_t *)"exit\n", 5), "console exit");
    libgo_console_free(con.console);
  }

  /* A command with a TTY: its size is set, its output read to the end, its exit code kept. */
  libgo_console_result cmd =
      libgo_instance_exec_interactive(client, name, "{\"command\":[\"sh\"],\"tty\":true}");
  CHECK(cmd.error == NULL, "exec_interactive: %s", cmd.error ? cmd.error->message : "");
  libgo_error_free(cmd.error);
  if (cmd.console) {
    bool has_code = true;
    int64_t code = -1;
    ok(libgo_console_exit_code(cmd.console, &has_code, &code), "exit code while running");
    CHECK(!has_code, "no exit code while the command runs");
    ok(libgo_console_resize(cmd.console, 33, 97), "resize");
    const char *line = "stty size; exit 7\n";
    ok(libgo_console_write(cmd.console, (const uint8_t *)line, strlen(line)), "exec write");
    char out[4096] = {0};
    const char *failed = read_console(cmd.console, out, sizeof out, NULL);
    CHECK(failed == NULL, "exec read to the end: %s", failed ? failed : "");
    CHECK(strstr(out, "33 97") != NULL, "the TTY has the size set: %s", out);
    ok(libgo_console_exit_code(cmd.console, &has_code, &code), "exit code");
    CHECK(has_code && code == 7, "exit code 7, got %d %lld", has_code, (long long)code);
    libgo_console_free(cmd.console);
  }

  ok(libgo_instance_pause(client, name), "pause");
  ok_field(libgo_instance_get(client, name), "state", "\"paused\"", "get paused");
  ok(libgo_instance_resume(client, name), "resume");
  ok(libgo_instance_stop(client, name, "{\"timeoutSecs\":5}"), "stop");
  ok_field(libgo_instance_get(client, name), "state", "\"stopped\"", "get stopped");

  /* A volume and a network round trip. */
  snprintf(buf, sizeof buf, "{\"name\":\"%s-vol\"}", prefix);
  snprintf(want, sizeof want, "\"%s-vol\"", prefix);
  ok_field(libgo_volume_create(client, buf), "name", want, "volume create");
  snprintf(buf, sizeof buf, "%s-vol", prefix);
  ok(libgo_volume_delete(client, NULL, buf, false), "volume delete");
  snprintf(buf, sizeof buf, "{\"name\":\"%s-net\"}", prefix);
  snprintf(want, sizeof want, "\"%s-net\"", prefix);
  ok_field(libgo_network_create(client, buf), "name", want, "network create");
  snprintf(buf, sizeof buf, "%s-net", prefix);
  ok(libgo_network_connect(client, buf, name), "network connect");
  ok(libgo_network_disconnect(client, buf, name), "network disconnect");
  ok(libgo_network_delete(client, NULL, buf), "network delete");

  ok(libgo_instance_delete(client, name, true), "delete");
  fails_with(libgo_instance_get(client, name), LIBGO_CODE_NOT_FOUND, "gone");

  /* Every list pages, like instances. */
  ok_field(libgo_image_page(client, 1, 1), "pageSize", "1", "image page");
  ok_field(libgo_network_page(client, 0, 0), "page", "1", "network page");
  ok_field(libgo_volume_page(client, 1, 100), "pageSize", "100", "volume page");
  fails_with(libgo_image_page(client, 1, 1000), LIBGO_CODE_INVALID_INPUT, "page too large");

  /* A batch of two, then a batch delete of them and one that does not exist. */
  snprintf(spec, sizeof spec,
           "{\"spec\":{\"name\":\"x\",\"kind\":\"container\",\"image\":\"%s\","
           "\"command\":[\"sleep\",\"60\"]},\"count\":2,\"namePattern\":\"%s-b{n}\"}",
           image, prefix);
  ok_field(libgo_instance_create_batch(client, spec, NULL, NULL), "succeeded", "2", "batch create");
  snprintf(buf, sizeof buf, "%s-b2", prefix);
  ok_field(libgo_instance_get(client, buf), "kind", "\"container\"", "batch item exists");
  snprintf(buf, sizeof buf, "[\"%s-b1\",\"%s-b2\",\"%s-none\"]", prefix, prefix, prefix);
  ok_field(libgo_instance_delete_batch(client, buf, true, NULL, NULL), "failed", "1", "batch delete");
  snprintf(buf, sizeof buf, "%s-b1", prefix);
  fails_with(libgo_instance_get(client, buf), LIBGO_CODE_NOT_FOUND, "batch item gone");
  fails_with(libgo_instance_create_batch(client, "{\"spec\":{\"name\":\"x\"},\"count\":0}", NULL, NULL),
             LIBGO_CODE_INVALID_INPUT, "a batch of none");

  libgo_client_free(client);
  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures == 0 ? 0 : 1;
}
