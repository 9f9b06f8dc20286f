/*
 * ops.c — the op table: qlm_op_kind -> lifecycle (see ops.h).
 * The kinds are stored in .qlm files, so entries are only ever appended.
 */
#include "nn/ops.h"

const qlm_op_def *const qlm__ops[QLM_OP_COUNT] = {
    [QLM_OP_INPUT] = &qlm__op_input,
    [QLM_OP_CONV2D] = &qlm__op_conv2d,
    [QLM_OP_BATCHNORM] = &qlm__op_batchnorm,
    [QLM_OP_RELU] = &qlm__op_relu,
    [QLM_OP_RELU6] = &qlm__op_relu6,
    [QLM_OP_ADD] = &qlm__op_add,
    [QLM_OP_GLOBAL_AVGPOOL] = &qlm__op_global_avgpool,
    [QLM_OP_AVGPOOL] = &qlm__op_avgpool,
    [QLM_OP_MAXPOOL] = &qlm__op_maxpool,
    [QLM_OP_LINEAR] = &qlm__op_linear,
    [QLM_OP_DROPOUT] = &qlm__op_dropout,
    [QLM_OP_FLATTEN] = &qlm__op_flatten,
    [QLM_OP_SOFTMAX] = &qlm__op_softmax,
    [QLM_OP_LOG_SOFTMAX] = &qlm__op_log_softmax,
    [QLM_OP_FAKE_QUANT] = &qlm__op_fake_quant,
    [QLM_OP_CONV_BN_QAT] = &qlm__op_conv_bn_qat,
    [QLM_OP_LINEAR_QAT] = &qlm__op_linear_qat,
};
