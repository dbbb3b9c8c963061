/*
 * LibGo from C: start a container, run a command in it, delete it.
 *
 *   cc hello.c -I bindings/c/include -L target/debug -llibgo_c -o hello
 *   ./hello hello-c libgo-test/busybox:latest
 */
#include <stdio.h>

#include "libgo.h"

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "hello-c";
  const char *image = argc > 2 ? argv[2] : "libgo-test/busybox:latest";

  libgo_error *err = NULL;
  libgo_client *client = libgo_client_new("{\"kvm\":\"off\"}", &err);
  if (!client) {
    fprintf(stderr, "connect failed (%d): %s\n", err->code, err->message);
    libgo_error_free(err);
    return 1;
  }

  char spec[512];
  snprintf(spec, sizeof spec,
           "{\"name\":\"%s\",\"kind\":\"container\",\"image\":\"%s\","
           "\"command\":[\"sleep\",\"300\"],\"start\":true}",
           name, image);
  libgo_result created = libgo_instance_create(client, spec);
  if (created.error) {
    fprintf(stderr, "create failed (%d): %s\n", created.error->code, created.error->message);
    libgo_result_free(&created);
    libgo_client_free(client);
    return 1;
  }
  libgo_result_free(&created);

  libgo_result out =
      libgo_instance_exec(client, name, "{\"command\":[\"echo\",\"hello from LibGo\"]}");
  int status = out.error ? 1 : 0;
  if (out.json) printf("%s says: %s\n", name, out.json);
  if (out.error) fprintf(stderr, "exec failed: %s\n", out.error->message);
  libgo_result_free(&out);

  libgo_error *gone = libgo_instance_delete(client, name, true);
  if (gone) {
    fprintf(stderr, "delete failed: %s\n", gone->message);
    libgo_error_free(gone);
    status = 1;
  }
  libgo_client_free(client);
  return status;
}
