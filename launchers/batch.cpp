#include "launchers/batch.hpp"

#include <regex>

namespace ipp::launchers {

namespace {
const std::vector<BatchSystem>& Systems() {
  static const std::vector<BatchSystem> systems = {
      {"Slurm", "#SBATCH ", "--partition=", "--account=", "--time=", {"sbatch"}, {"scancel"}, R"((?:Submitted batch job\s+)?(\d+))",
       "#!/bin/sh\n#SBATCH --job-name=ipp-engine-{cluster_id}\n#SBATCH --ntasks={n}\n"
       "#SBATCH --output={log_dir}/slurm-engine-%j.log\n{queue_line}{account_line}{walltime_line}{extra}\n"
       "{environment}srun --kill-on-bad-exit=0 {command}\n",
       "#!/bin/sh\n#SBATCH --job-name=ipp-controller-{cluster_id}\n#SBATCH --ntasks=1\n"
       "#SBATCH --output={log_dir}/slurm-controller-%j.log\n{queue_line}{account_line}{walltime_line}{extra}\n"
       "{environment}{command}\n"},
      {"PBS", "#PBS ", "-q ", "-A ", "-l walltime=", {"qsub"}, {"qdel"}, R"(^(\d+[\w.\-]*))",
       "#!/bin/sh\n#PBS -V\n#PBS -N ipp-engine\n#PBS -t 1-{n}\n#PBS -j oe\n#PBS -o {log_dir}/\n{queue_line}{account_line}{walltime_line}{extra}\n{environment}{command}\n",
       "#!/bin/sh\n#PBS -V\n#PBS -N ipp-controller\n#PBS -j oe\n#PBS -o {log_dir}/\n{queue_line}{account_line}{walltime_line}{extra}\n{environment}{command}\n"},
      {"SGE", "#$ ", "-q ", "-A ", "-l walltime=", {"qsub", "-terse"}, {"qdel"}, R"(^(\d+))",
       "#$ -V\n#$ -S /bin/sh\n#$ -N ipp-engine\n#$ -t 1-{n}\n#$ -j y\n#$ -o {log_dir}\n{queue_line}{account_line}{walltime_line}{extra}\n{environment}{command}\n",
       "#$ -V\n#$ -S /bin/sh\n#$ -N ipp-controller\n#$ -j y\n#$ -o {log_dir}\n{queue_line}{account_line}{walltime_line}{extra}\n{environment}{command}\n"},
      {"LSF", "#BSUB ", "-q ", "-P ", "-W ", {"bsub"}, {"bkill"}, R"(Job <(\d+)>)",
       "#!/bin/sh\n#BSUB -J ipp-engine[1-{n}]\n#BSUB -o {log_dir}/lsf-engine-%J.log\n{queue_line}{account_line}{walltime_line}{extra}\n{environment}{command}\n",
       "#!/bin/sh\n#BSUB -J ipp-controller\n#BSUB -o {log_dir}/lsf-controller-%J.log\n{queue_line}{account_line}{walltime_line}{extra}\n{environment}{command}\n"},
      {"HTCondor", "", "", "", "", {"condor_submit"}, {"condor_rm"}, R"(submitted to cluster (\d+))",
       "universe = vanilla\nexecutable = /bin/sh\narguments = \"-c '{command}'\"\n"
       "log = {log_dir}/condor-engine-$(Cluster).log\noutput = {log_dir}/condor-engine-$(Cluster).$(Process).out\n"
       "error = {log_dir}/condor-engine-$(Cluster).$(Process).err\ngetenv = true\n{environment}{extra}\nqueue {n}\n",
       "universe = vanilla\nexecutable = /bin/sh\narguments = \"-c '{command}'\"\n"
       "log = {log_dir}/condor-controller-$(Cluster).log\noutput = {log_dir}/condor-controller-$(Cluster).out\n"
       "error = {log_dir}/condor-controller-$(Cluster).err\ngetenv = true\n{environment}{extra}\nqueue 1\n"},
  };
  return systems;
}
}  // namespace

const BatchSystem* FindBatchSystem(const std::string& name) {
  for (const auto& s : Systems()) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

Result<std::string> FillTemplate(const std::string& text, const Json& fields) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t open = text.find('{', i);
    if (open == std::string::npos) {
      out.append(text, i, std::string::npos);
      break;
    }
    size_t close = text.find('}', open);
    if (close == std::string::npos) return Status::InvalidArgument("unclosed '{' in job template");
    out.append(text, i, open - i);
    std::string name = text.substr(open + 1, close - open - 1);
    auto it = fields.find(name);
    if (it == fields.end()) return Status::InvalidArgument("unknown field {" + name + "} in job template");
    out += it->is_string() ? it->get<std::string>() : it->dump();
    i = close + 1;
  }
  return out;
}

Json DirectiveLines(const BatchSystem& system, const Json& section) {
  auto line = [&](const char* key, const std::string& flag) {
    std::string value = section.value(key, std::string());
    return system.directive.empty() || value.empty() ? std::string() : system.directive + flag + value + "\n";
  };
  return {{"queue_line", line("queue", system.queue_flag)},
          {"account_line", line("account", system.account_flag)},
          {"walltime_line", line("walltime", system.walltime_flag)}};
}

std::string JobOutput(const BatchSystem& system, bool controller, const std::string& log_dir, const std::string& job_id) {
  const std::string role = controller ? "controller" : "engine";
  const std::string dir = log_dir + "/";
  // SGE and PBS name array jobs' files per task, after the job's name (ipp-engine).
  if (system.name == "Slurm") return dir + "slurm-" + role + "-" + job_id + ".log";
  if (system.name == "PBS") return dir + "ipp-" + role + ".o" + job_id + (controller ? "" : "*");
  if (system.name == "SGE") return dir + "ipp-" + role + ".o" + job_id + (controller ? "" : ".*");
  if (system.name == "LSF") return dir + "lsf-" + role + "-" + job_id + ".log";
  if (system.name == "HTCondor") return dir + "condor-" + role + "-" + job_id + (controller ? "" : ".*") + ".out";
  return log_dir;
}

Result<std::string> ParseJobId(const BatchSystem& system, const std::string& output) {
  std::smatch m;
  std::regex re(system.job_id_regex, std::regex::multiline);
  if (std::regex_search(output, m, re) && m.size() > 1) return m[1].str();
  return Status::Unavailable(system.name + " submission printed no job id: " + output);
}

}  // namespace ipp::launchers
