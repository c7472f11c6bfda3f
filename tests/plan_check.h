/* Plans against the double reference, the check several suites share
 * (check_plan: the plain plans, with an event between them; check_tuning: every
 * tuning extreme and every synthetic device's heuristics). */
#ifndef CLBN_TESTS_PLAN_CHECK_H
#define CLBN_TESTS_PLAN_CHECK_H

#include <stdint.h>

#include "clbn.h"

enum {
    PC_EVENT = 1,     /* the backward waits on the training forward's event */
    PC_INFERENCE = 2, /* then the inference forward and backward, from the original statistics */
};

/* A plan of op on d, with clbn_plan_set_tuning(tuning) unless NULL (asserted). */
clbn_plan *pc_make_plan(clbn_op op, const clbn_tensor_desc *d, const char *tuning);

/* The training forward's y and running statistics, then the backward's dx,
 * dweight and dbias from the statistics it saved (and, with PC_INFERENCE,
 * the inference forward and backward), through plans of desc made with
 * `tuning` (NULL: untuned) on float32 data drawn from `seed`, against
 * tests/reference*.c. */
void pc_plans_against_reference(const clbn_tensor_desc *desc, uint64_t seed, const char *tuning,
                                int flags);

#endif
