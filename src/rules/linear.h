/* Shared by the rules for linear maps with one constant weight (zplus,
 * gamma, flat, wsquare): which input is the activation x, which the weight
 * W, which the bias, and the weight transforms. F(x, W) below is the node's
 * own kernel with the bias replaced by zeros — these rules ignore the bias,
 * as the paper's alpha-beta and z^B rules do. */
#ifndef RP_RULES_LINEAR_H
#define RP_RULES_LINEAR_H

#include "rules/rule.h"

typedef struct rp_linear {
    int xi, wi, bi;      /* input indices of x, W, bias (-1: none) */
    bool swap;           /* Gemm alpha < 0: the effective weight's positive part is alpha * W- */
    rp_tensor zero_bias; /* zeros shaped like the bias (owned; data NULL without bias) */
} rp_linear;

/* Check that the node is MatMul, Gemm, Conv or two-operand Einsum with one
 * float32 activation and one constant float32 weight, and that relprop has
 * its gradient; fill *L. Messages name the node, op and `rule`. */
rp_status rp_linear_prepare(const rp_rule_node *rn, const char *rule, rp_linear *L, rp_error *err);
void rp_linear_release(rp_linear *L);

/* dst = a float32 tensor shaped like the node's weight with f(w) in every
 * element, where `pos`/`neg` are the positive/negative parts of the
 * EFFECTIVE weight (Gemm's alpha sign accounted for, see swap): f gets the
 * raw w and the swap flag. dst is owned by the caller (free(dst->data)). */
rp_status rp_linear_weight(const rp_linear *L, const rp_rule_node *rn, rp_tensor *dst,
                           float (*f)(float w, bool swap, double arg), double arg, rp_error *err);

/* f for rp_linear_weight: the positive / negative part of the effective
 * weight (arg unused). */
float rp_linear_positive_part(float w, bool swap, double arg);
float rp_linear_negative_part(float w, bool swap, double arg);

/* in_override for rp_rule_forward_with / vjp_with: x -> xv, W -> wv, bias
 * -> zeros. ov must have room for 3 entries. */
void rp_linear_overrides(const rp_linear *L, rp_tensor **ov, rp_tensor *xv, rp_tensor *wv);

/* The input-independent rules (flat, w^2): with V the rule's weight,
 *     Z = F(1, V),  R_x += vjp(F at V)(sdiv(R, Z))
 * Scratch: rp_linear_fixed_scratch floats. */
size_t rp_linear_fixed_scratch(const rp_linear *L, const rp_rule_node *rn);
rp_status rp_linear_apply_fixed(rp_rule_ctx *c, const rp_linear *L, rp_tensor *v, const char *rule);

#endif
