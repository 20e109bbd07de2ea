/* qf_mpi.h - qf_dist (qf_dist.h) over MPI, for the MPI builds of the
 * programs (make MPI=1: bin/qforge-calibrate-mpi, bin/qforge-quantize-mpi).
 * Program layer only: no library links it, only the programs built with
 * -DQF_MPI do.
 *
 * The job prints one error line. With more than one rank, each rank's
 * stderr is kept aside (ranks > 0 also lose their stdout) from qf_mpi_start
 * to qf_mpi_finish; there the ranks agree on failure and rank 0 alone
 * prints "prog: error: rank K: cause", K the lowest failing rank and cause
 * that rank's own error message. Rank 0's other stderr lines (warnings) are
 * printed then. A rank killed by a signal is mpirun's business: it ends the
 * job (rank 0 never renames its temporary output).
 */
#ifndef QF_MPI_H
#define QF_MPI_H

#include "qf_dist.h"

/* MPI_Init and the rank's qf_dist; NULL with one rank (the program then
 * behaves as its plain build). Exits 1 if MPI cannot start. */
qf_dist *qf_mpi_start(int *argc, char ***argv, const char *prog);

/* Agree on rc across the ranks, print the job's error line on rank 0,
 * MPI_Finalize; returns the exit code of this process: the job's on rank 0,
 * 0 on the others (mpirun then exits with rank 0's). */
int qf_mpi_finish(qf_dist *d, int rc);

#endif
