/* The qualm subcommands: each takes argc/argv with argv[0] = its name. */
#ifndef QLM_TOOLS_COMMANDS_H
#define QLM_TOOLS_COMMANDS_H

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_study(int argc, char **argv);
int cmd_results(int argc, char **argv);

#endif
