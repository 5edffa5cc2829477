/* A C99 program outside the tree, built against the installed fiber through
 * pkg-config: a generator through fiber.h. */
#include <fiber/fiber.h>

#include <stdint.h>
#include <stdio.h>

static void* count(void* arg) {
  intptr_t limit = (intptr_t)arg, i;
  for (i = 1; i <= limit; ++i)
    if (fiber_yield((void*)i, NULL) != FIBER_OK) return NULL;
  return (void*)(intptr_t)6;
}

int main(void) {
  fiber_t* f = fiber_create(count, (void*)(intptr_t)3, 0);
  void* v = NULL;
  int rc;
  if (!f) {
    fprintf(stderr, "fiber_create: %s\n", fiber_last_error());
    return 1;
  }
  while ((rc = fiber_resume(f, NULL, &v)) == FIBER_OK) printf("%d ", (int)(intptr_t)v);
  if (rc != FIBER_FINISHED) {
    fprintf(stderr, "fiber_resume: %s: %s\n", fiber_status_name(rc), fiber_last_error());
    return 1;
  }
  printf("finished %d\n", (int)(intptr_t)v);
  fiber_destroy(f);
  return 0;
}
