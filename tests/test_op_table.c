/* The op table says what each op means (src/ops/ops.h): every row must say
 * it, and say it consistently, since rule assignment, the relevance walk,
 * the memory plan and structure detection read nothing else. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

static void each_row(void (*check)(const rp_op *))
{
    int nf = 0;
    const rp_op_family *f = rp_op_families(&nf);
    int rows = 0;
    for (int i = 0; i < nf; i++)
        for (size_t r = 0; r < f[i].count; r++, rows++)
            check(&f[i].rows[r]);
    ck_assert_int_gt(rows, 60);
}

static void says_what_it_means(const rp_op *op)
{
    ck_assert_msg(op->role != RP_ROLE_UNSET, "%s (opset %d): no .role", op->name, op->since_opset);
    ck_assert_msg(op->prepare && op->forward, "%s (opset %d): no kernel", op->name, op->since_opset);
    ck_assert_msg(op->min_out >= 1 && op->max_out >= op->min_out && op->max_in >= op->min_in, "%s: arity", op->name);
    /* Shape and constant work has no gradient; every op relevance or a
     * gradient can flow through has one (only some RP_ROLE_OTHER ops lack
     * it: Equal, whose output is boolean, and ReduceProd). */
    if (op->role == RP_ROLE_NONE)
        ck_assert_msg(!op->backward, "%s: shape work with a gradient", op->name);
    else if (op->role != RP_ROLE_OTHER)
        ck_assert_msg(op->backward != NULL, "%s (opset %d): role %d but no gradient", op->name, op->since_opset,
                      (int)op->role);
    /* Summands: what is added into the output. */
    if (op->summand_inputs)
        ck_assert_msg(op->role == RP_ROLE_SUM || op->role == RP_ROLE_CONTRACTION || op->role == RP_ROLE_MOVE,
                      "%s: summand inputs on a %d op", op->name, (int)op->role);
    if (op->flags & RP_OPF_SUBTRACTS)
        ck_assert_msg(op->role == RP_ROLE_SUM, "%s: subtracts but is no sum", op->name);
    if ((op->flags & RP_OPF_MOVES_ONCE) || op->moves_once)
        ck_assert_msg(op->role == RP_ROLE_MOVE || op->role == RP_ROLE_PASS, "%s: moves once but is no move",
                      op->name);
    if (op->flags & RP_OPF_ALIAS)
        ck_assert_msg((op->flags & RP_OPF_MOVES_ONCE) || op->moves_once, "%s: aliases but copies", op->name);
}

START_TEST(every_row_says_what_it_means)
{
    each_row(says_what_it_means);
}
END_TEST

/* Rows of one op differ in what an opset changed (attributes into inputs),
 * never in what the op is. */
static const rp_op *first_of_name;
static void same_meaning(const rp_op *op)
{
    const rp_op *a = rp_op_lookup(op->name, 1000);
    ck_assert_ptr_nonnull(a);
    ck_assert_msg(a->role == op->role, "%s: opset %d and %d rows differ in role", op->name, a->since_opset,
                  op->since_opset);
    uint32_t meaning = RP_OPF_MOVES_ONCE | RP_OPF_SUBTRACTS | RP_OPF_SPELLS_NORM;
    ck_assert_msg((a->flags & meaning) == (op->flags & meaning), "%s: rows differ in meaning flags", op->name);
    ck_assert_msg(a->summand_inputs == op->summand_inputs, "%s: rows differ in summands", op->name);
    first_of_name = a;
}

START_TEST(rows_of_one_op_agree)
{
    each_row(same_meaning);
    ck_assert_ptr_nonnull(first_of_name);
}
END_TEST

/* What the rules rely on, spelled out for the ops every ViT has. */
START_TEST(the_ops_of_a_vit)
{
    ck_assert_int_eq(rp_op_lookup("MatMul", 13)->role, RP_ROLE_CONTRACTION);
    ck_assert(rp_op_input_summand(rp_op_lookup("Gemm", 13), 2));
    ck_assert(!rp_op_input_summand(rp_op_lookup("Gemm", 13), 1));
    ck_assert(rp_op_input_summand(rp_op_lookup("Conv", 11), 2));
    ck_assert(rp_op_input_summand(rp_op_lookup("Concat", 13), 40)); /* variadic: every input */
    ck_assert(rp_op_input_nondiff(rp_op_lookup("Reshape", 14), 1));
    ck_assert(!rp_op_input_nondiff(rp_op_lookup("Reshape", 14), 0));
    ck_assert(!rp_op_input_nondiff(NULL, 0));
    ck_assert(rp_op_lookup("Sub", 14)->flags & RP_OPF_SUBTRACTS);
    ck_assert_int_eq(rp_op_lookup("Add", 14)->role, RP_ROLE_SUM);
    ck_assert_int_eq(rp_op_lookup("Softmax", 13)->role, RP_ROLE_MAP);
    ck_assert_int_eq(rp_op_lookup("Dropout", 13)->role, RP_ROLE_PASS);
    ck_assert_int_eq(rp_op_lookup("Shape", 13)->role, RP_ROLE_NONE);
    ck_assert(!(rp_op_lookup("LogSoftmax", 13)->flags & RP_OPF_SPELLS_NORM));
}
END_TEST

/* Gather moves each element once only for distinct non-negative constant indices. */
START_TEST(gather_moves_once_by_its_indices)
{
    const rp_op *g = rp_op_lookup("Gather", 13);
    rp_node node = {.n_in = 2};
    int64_t distinct[3] = {2, 0, 1}, repeated[3] = {0, 1, 0}, negative[2] = {1, -1};
    rp_tensor data = {0}, idx = {0};
    ck_assert(rp_tensor_set_shape(&idx, RP_INT64, 1, (int64_t[]){3}));
    const rp_tensor *in[2] = {&data, &idx};
    idx.data = distinct;
    ck_assert(rp_op_moves_once(g, &node, in));
    idx.data = repeated;
    ck_assert(!rp_op_moves_once(g, &node, in));
    ck_assert(rp_tensor_set_shape(&idx, RP_INT64, 1, (int64_t[]){2}));
    idx.data = negative;
    ck_assert(!rp_op_moves_once(g, &node, in));
    in[1] = NULL; /* indices computed at run time */
    ck_assert(!rp_op_moves_once(g, &node, in));
    ck_assert(rp_op_moves_once(rp_op_lookup("Transpose", 13), &node, in));
    ck_assert(!rp_op_moves_once(rp_op_lookup("Expand", 13), &node, in));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("op_table");
    TCase *tc = tcase_create("rows");
    tcase_add_test(tc, every_row_says_what_it_means);
    tcase_add_test(tc, rows_of_one_op_agree);
    tcase_add_test(tc, the_ops_of_a_vit);
    tcase_add_test(tc, gather_moves_once_by_its_indices);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
